"""The command line: the main job, and one clear line with exit code 2 for every user error."""

from __future__ import annotations

import errno
import io
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trainkit.cli import app

REPO = Path(__file__).resolve().parents[1]
TINY = """
name: tiny
task: binary
data: {source: generator, generator: learnable_binary, rows: 120, features: 4, seed: 0}
preprocessing: {standardize_inputs: true}
model:
  layers:
    - {type: dense, units: 4, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {name: adam, learning_rate: 0.01}
metrics: [accuracy]
training: {epochs: 2, batch_size: 32, jit_compile: false}
"""


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def tiny_recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def run_dirs(logdir: Path) -> list[Path]:
    return [p for p in logdir.glob("*/*") if p.is_dir()] if logdir.exists() else []


def _disk_full(*args, **kwargs):
    """A stand-in for a write that meets a full disk."""
    raise OSError(errno.ENOSPC, "No space left on device")


def test_version_and_short_help(runner):
    # Both were usage errors: `trainkit --version` and `trainkit train -h`.
    import keras

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("trainkit ") and f"keras {keras.__version__}" in result.output
    short, long = runner.invoke(app, ["train", "-h"]), runner.invoke(app, ["train", "--help"])
    assert short.exit_code == 0 and short.output == long.output and "RECIPE" in short.output
    # --help said "trainkit, TensorFlow and Keras" while --version also prints Python's.
    assert f"Python {platform.python_version()}" in result.output and "Keras and Python" in " ".join(runner.invoke(app, ["--help"]).output.split())


def test_train_writes_run_directory_with_report_and_events(runner, tiny_recipe, tmp_path):
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "--set", "training.epochs=3"])
    assert result.exit_code == 0, result.output
    (run_dir,) = run_dirs(logdir)
    assert run_dir.parent.name == "tiny"
    report = json.loads((run_dir / "report.json").read_text())
    assert report["epochs_run"] == 3 and len(report["history"]["loss"]) == 3
    assert "epochs: 3" in (run_dir / "recipe.yaml").read_text()
    assert list((run_dir / "train").glob("events.out.tfevents.*"))
    assert list((run_dir / "validation").glob("events.out.tfevents.*"))
    assert str(run_dir) in result.output


def test_two_runs_in_the_same_second_get_distinct_directories(runner, tiny_recipe, tmp_path):
    logdir = tmp_path / "runs"
    for _ in range(2):
        assert runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q", "--set", "training.epochs=1"]).exit_code == 0
    assert len(run_dirs(logdir)) == 2


def test_check_reports_ok_without_training_or_writing(runner, tiny_recipe, tmp_path, monkeypatch):
    # The recipe's default logdir ("runs") is relative to the working directory: run there, so a
    # check that wrote a run would write it into tmp_path.
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["check", str(tiny_recipe)])
    assert result.exit_code == 0, result.output
    assert "ok: no compatibility or data problems" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]


def test_check_checks_every_variant_of_a_sweep(runner, tiny_recipe):
    result = runner.invoke(app, ["check", str(tiny_recipe), "--set", "sweep={optimizer.learning_rate: [0.1, 0.01]}"])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok: no compatibility or data problems") == 2
    assert "tiny-learning_rate=0.1:" in result.output and "tiny-learning_rate=0.01:" in result.output


def test_check_refuses_a_sweep_variant_that_would_fail_naming_it(runner, tiny_recipe):
    result = runner.invoke(app, ["check", str(tiny_recipe), "--set", "sweep={optimizer.learning_rat: [0.1, 0.01]}"])
    assert result.exit_code == 2
    assert "bad-optimizer-argument" in result.output and 'Did you mean "learning_rate"' in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("override", "code"), [
    ("training.batch_size=100000", "batch-larger-than-data"),
    ("training.validation_split=0.9", "few-training-rows"),
    ("data.rows=5", "few-training-rows"),
])
def test_check_warns_about_doubtful_sizes_instead_of_saying_ok(runner, tiny_recipe, override, code):
    result = runner.invoke(app, ["check", str(tiny_recipe), "--set", override])
    assert result.exit_code == 0, result.output
    assert f"WARNING [{code}]" in result.output and "ok: no compatibility" not in result.output


def test_recipes_lists_the_shipped_recipes(runner):
    result = runner.invoke(app, ["recipes", str(REPO / "recipes")])
    assert result.exit_code == 0
    assert "mlp_binary" in result.output and "he_normal" in result.output


BAD_INPUTS = [
    ("unknown-key-override", ["--set", "training.epoch=3"], "bad-override", "training.epochs"),
    ("wrong-type", ["--set", "training.epochs=many"], "recipe-invalid-value", "training.epochs"),
    ("bad-set-syntax", ["--set", "training.epochs"], "bad-override", "training.epochs"),
    ("unknown-activation", ["--set", "model.layers.0.activation=relux"], "unknown-activation", "relu"),
    ("unknown-loss", ["--set", "loss=binary_crossentropyy"], "unknown-loss", "binary_crossentropy"),
    ("misspelt-loss-alias", ["--set", "loss=mse_"], "unknown-loss", 'Did you mean "mse"'),  # only full names were offered
    ("unknown-optimizer", ["--set", "optimizer.name=adamm"], "unknown-optimizer", "adam"),
    ("misspelt-optimizer-argument", ["--set", "optimizer.learning_rat=0.1"], "bad-optimizer-argument", 'Did you mean "learning_rate"'),
    ("keras-2-lr", ["--set", "optimizer={name: adam, lr: 0.01}"], "bad-optimizer-argument", 'Did you mean "learning_rate"'),
    ("negative-learning-rate", ["--set", "optimizer.learning_rate=-1.0"], "bad-optimizer-argument", "finite number > 0"),
    ("nan-learning-rate", ["--set", "optimizer.learning_rate=.nan"], "bad-optimizer-argument", "finite number > 0"),
    ("unknown-layer", ["--set", "model.layers.0.type=dense2"], "recipe-invalid-value", "dense"),
    ("incompatible", ["--set", "loss=mse"], "regression-loss-for-classification", "BinaryCrossentropy"),
    ("misspelt-loss-argument", ["--set", "loss={name: binary_crossentropy, from_logit: true}"], "unknown-loss", 'Did you mean "from_logits"'),
    ("misspelt-metric", ["--set", "metrics=[percision]"], "unknown-metric", 'Did you mean "precision"'),
    # A function of the user's own by its module path (as model.builder is written): said to be Python-only.
    ("own-loss-by-path", ["--set", "loss=mymod:focal"], "unknown-loss", "Train with it from Python: Trainer(model, loss=focal, ...)"),
    ("own-metric-by-path", ["--set", "metrics=[mymod.my_acc]"], "unknown-metric", "Trainer(model, metrics=[my_acc], ...)"),
    # Arguments Keras would take and fail on in the first step, or train wrongly with.
    ("quoted-flag", ["--set", "loss={name: binary_crossentropy, from_logits: 'false'}"], "bad-loss-argument", "from_logits takes true or false"),
    ("loss-argument-out-of-range", ["--set", "loss.label_smoothing=5"], "bad-loss-argument", "label_smoothing takes a number in [0, 1]"),
    ("loss-argument-keras-refuses", ["--set", "loss.reduction=bogus"], "bad-loss-argument", "reduction"),
    ("optimizer-argument-of-another-kind", ["--set", "optimizer.beta_1=x"], "bad-optimizer-argument", "beta_1 takes a number"),
    ("negative-clipnorm", ["--set", "optimizer.clipnorm=-1"], "bad-optimizer-argument", "clipnorm takes a number in (0, inf)"),
    ("zero-loss-scale-factor", ["--set", "optimizer.loss_scale_factor=0"], "bad-optimizer-argument", "loss_scale_factor takes a number in (0, inf)"),
    ("negative-adagrad-accumulator", ["--set", "optimizer={name: adagrad, initial_accumulator_value: -1}"], "bad-optimizer-argument",
     "initial_accumulator_value takes a number in [0, inf)"),
    ("misspelt-metric-argument", ["--set", "metrics=[{name: accuracy, treshold: 0.7}]"], "bad-metric-argument", 'Did you mean "threshold"'),
    ("metric-argument-keras-refuses", ["--set", "metrics=[{name: auc, num_thresholds: -5}]"], "bad-metric-argument", "num_thresholds"),
    ("initializer-argument-of-another-kind", ["--set", "model.layers.0.kernel_initializer={name: random_normal, stddev: abc}"], "unknown-initializer",
     "stddev takes a number"),
    ("layer-name-tensorflow-refuses", ["--set", "model.layers.0.name=my layer:1"], "recipe-invalid-value", "a layer name takes letters"),
    ("section-that-is-no-mapping", ["--set", "training=3"], "recipe-invalid-value", "expected a mapping of keys"),
    ("noise-beyond-a-fraction", ["--set", "data.noise=5"], "recipe-invalid-value", "at most 1; got 5"),
    ("kernel-larger-than-memory", ["--set", "model.layers.0.units=1000000", "--set", "data.features=100000"], "bad-model", "more than this machine's memory"),
    ("loss-without-name", ["--set", "loss={from_logits: true}"], "recipe-invalid-value", "such as {name: binary_crossentropy"),
    ("boolean-for-a-number", ["--set", "training.epochs=true"], "recipe-invalid-value", "epochs must be a number"),
    ("misspelt-monitor", ["--set", "training.early_stopping={monitor: val_los}"], "recipe-invalid-value", "did you mean 'val_loss'"),
    ("sweep-in-train", ["--set", "sweep.optimizer.learning_rate=[0.1, 0.01]"], "sweep-needs-compare", "--set 'sweep.optimizer.learning_rate=[0.1, 0.01]'"),
    ("sweep-of-one-value", ["--set", "sweep.optimizer.learning_rate=0.1"], "recipe-invalid-value", "--set sweep.optimizer.learning_rate=0.1: Invalid value at sweep.optimizer.learning_rate:"),
    ("duplicate-sweep-value", ["--set", "sweep.training.epochs=[1, 1]"], "recipe-invalid-value", "lists 1 twice"),
    ("all-class-weights-zero", ["--set", "training.class_weight={0: 0, 1: 0}"], "class-weight-all-zero", "nothing would be learned"),
    ("class-weight-for-no-label", ["--set", "training.class_weight={5: 1.0}"], "class-weight-unknown-class", "class 5, which is not among the training labels {0, 1}"),
]


@pytest.mark.parametrize(("case", "args", "code", "hint"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_line_exit_2_and_no_run_dir(runner, tiny_recipe, tmp_path, case, args, code, hint):
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: [{code}]"), result.output
    assert hint in lines[0]
    assert "Traceback" not in result.output
    assert not logdir.exists()  # not even an empty one (errors found after loading left runs/)


SCHEDULE = "optimizer={name: sgd, learning_rate: {class_name: CosineDecay, config: {initial_learning_rate: 0.1, decay_steps: 100}}}"


def test_a_recipe_whose_learning_rate_is_a_schedule_trains(runner, tiny_recipe, tmp_path):
    # The optimizer refused the mapping (bad-optimizer-argument): a recipe could not use a schedule.
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(tmp_path / "runs"), "-q", "--set", SCHEDULE])
    assert result.exit_code == 0, result.output
    [run] = run_dirs(tmp_path / "runs")
    assert "class_name: CosineDecay" in (run / "recipe.yaml").read_text()


def test_unknown_key_in_file_names_its_path_and_the_closest_key(runner, tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text(TINY.replace("training: {epochs: 2", "training: {epoch: 2"))
    result = runner.invoke(app, ["train", str(path), "--logdir", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert result.output.startswith("error: [recipe-unknown-key]")
    assert "training.epoch" in result.output and "training.epochs" in result.output
    assert not (tmp_path / "runs").exists()


def test_missing_recipe_file(runner, tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert result.output.startswith("error: [recipe-not-found]")


def test_unwritable_logdir_fails_before_training(runner, tiny_recipe, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(blocker / "runs")])
    assert result.exit_code == 2
    assert result.output.startswith("error: [logdir-unwritable]")
    assert "epoch" not in result.output


def test_console_script_runs_without_tensorflow_startup_noise(tiny_recipe, tmp_path):
    """A real process: the installed entry point, stderr free of TF's C++ start-up lines."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    proc = subprocess.run(
        [sys.executable, "-m", "trainkit.cli", "train", str(tiny_recipe), "--logdir", str(tmp_path / "runs")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "epoch 2/2" in proc.stderr
    assert "cuda" not in proc.stderr.lower() and "absl" not in proc.stderr
    assert "run written to" in proc.stdout and "(trainkit tensorboard " in proc.stdout


def test_compare_of_a_default_learning_rate_sweep_runs_without_tensorflow_startup_noise(tmp_path):
    """`optimizer: adam` swept: its default learning rate, read for the hparams, imported Keras unfiltered."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.replace("optimizer: {name: adam, learning_rate: 0.01}", "optimizer: adam\nsweep: {training.batch_size: [32]}")
                    .replace("epochs: 2", "epochs: 1"))
    env = {**os.environ, "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    proc = subprocess.run([sys.executable, "-m", "trainkit.cli", "compare", str(path), "--logdir", str(tmp_path / "runs"), "-q"],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "tiny-batch_size=32" in proc.stdout
    assert "cuda" not in proc.stderr.lower() and "absl" not in proc.stderr


def test_a_reader_that_stops_early_does_not_stop_training(tiny_recipe, tmp_path):
    """``trainkit train recipe.yaml 2>&1 | head -1``: the closed pipe aborted the run half-written."""
    logdir = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "trainkit.cli", "train", str(tiny_recipe), "--logdir", str(logdir), "--set", "training.epochs=30"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("epoch 1/30")
    proc.stdout.close()  # like head -1
    assert proc.wait(timeout=300) == 0
    (run_dir,) = run_dirs(logdir)
    assert json.loads((run_dir / "report.json").read_text())["epochs_run"] == 30


def test_a_closed_pipe_sends_the_stream_to_devnull(tmp_path):
    from trainkit.writers.pipes import ClosedPipeSafe

    read_end, write_end = os.pipe()
    stream = ClosedPipeSafe(os.fdopen(write_end, "w", buffering=1))
    stream.write("seen\n")
    assert os.read(read_end, 100) == b"seen\n"
    os.close(read_end)
    assert stream.write("nobody reads this\n") == len("nobody reads this\n")
    stream.flush()
    assert stream.reader_gone and not stream.isatty()
    # click writes bytes to .buffer when the text stream's encoding is ASCII (a C locale)
    read_end, write_end = os.pipe()
    os.close(read_end)
    text = ClosedPipeSafe(os.fdopen(write_end, "w"))
    binary = text.buffer
    assert binary.write(b"x" * 100_000) == 100_000  # more than the buffer holds: a real write
    binary.flush()
    assert binary.reader_gone

    class FullDisk(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    # Any other failure is kept for the command to report at its end, not raised into the run.
    full = ClosedPipeSafe(FullDisk())
    assert full.write("x") == 1 and not full.reader_gone
    assert full.lost is not None and full.lost.errno == errno.ENOSPC


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_output_that_cannot_be_written_loses_no_run_and_is_reported_at_the_end(tiny_recipe, tmp_path):
    """``trainkit train r.yaml 2> log`` on a full disk: the first epoch line raised ENOSPC inside
    the training callback, and the run ended "failed" after 0 epochs (exit 1, the traceback lost).
    A stdout closed with ``>&-`` (``sys.stdout is None``) failed the same way at the summary."""
    cases = {"stderr full": {"stderr": open("/dev/full", "w")},  # noqa: SIM115
             "stdout closed": {"stderr": subprocess.PIPE, "preexec_fn": lambda: os.close(1)}}
    for case, streams in cases.items():
        logdir = tmp_path / case.replace(" ", "-")
        proc = subprocess.run([sys.executable, "-m", "trainkit.cli", "train", str(tiny_recipe), "--logdir", str(logdir)],
                              text=True, timeout=300, check=False, **streams)
        assert proc.returncode == 2, (case, proc.stderr)
        (run_dir,) = run_dirs(logdir)
        report = json.loads((run_dir / "report.json").read_text())
        assert (report["status"], report["epochs_run"]) == ("completed", 2), case
        if proc.stderr is not None:
            assert "Traceback" not in proc.stderr and "epoch 2/2" in proc.stderr
            assert proc.stderr.rstrip().splitlines()[-1].startswith("error: [output-unwritable] Could not write to standard output: it was closed")


@pytest.mark.parametrize(("logs", "first_line"), [
    ([], "trained 0 complete epochs in 1.5s (no epoch values)"),
    ([{"loss": 0.5}], "trained 1 epoch in 1.5s: loss 0.5000"),
    ([{"loss": 0.5}, {"loss": 0.25}], "trained 2 epochs in 1.5s: loss 0.2500"),
])
def test_the_summary_line_never_ends_on_an_empty_list_of_values(tmp_path, logs, first_line):
    from types import SimpleNamespace

    from trainkit.history import History
    from trainkit.run import RunResult, summary_lines

    history = History()
    for epoch, values in enumerate(logs):
        history.append(epoch, values)
    result = RunResult(run_dir=tmp_path / "r" / "t", history=history, trainer=SimpleNamespace(findings=[]), seconds=1.5)
    assert summary_lines(result)[0] == first_line


@pytest.mark.parametrize(("status", "logs", "first_line"), [
    # A NaN stop said only "trained 1 epoch in 1.5s: loss 0.5000", with the nan-loss error below it.
    ("nan-loss", [{"loss": 0.5}], "trained 1 epoch in 1.5s (stopped early in epoch 2 of 5 by a NaN/inf loss): loss 0.5000"),
    ("nan-loss", [], "trained 0 complete epochs in 1.5s (stopped early in epoch 1 of 5 by a NaN/inf loss; no epoch values)"),
    ("stopped", [{"loss": 0.5}, {"loss": 0.25}], "trained 2 epochs in 1.5s (stopped early after epoch 2 of 5 by early stopping): loss 0.2500"),
    ("completed", [{"loss": 0.5}], "trained 1 epoch in 1.5s: loss 0.5000"),
    # Stopped at its last epoch, it trained every epoch planned: "stopped early after epoch 5 of 5".
    ("stopped", [{"loss": 0.5}] * 5, "trained 5 epochs in 1.5s: loss 0.5000"),
])
def test_the_summary_line_says_a_run_stopped_early_and_why(tmp_path, status, logs, first_line):
    from types import SimpleNamespace

    from trainkit.history import History
    from trainkit.run import RunResult, summary_lines

    history = History()
    history.params = {"epochs": 5}
    for epoch, values in enumerate(logs):
        history.append(epoch, values)
    result = RunResult(run_dir=tmp_path / "r" / "t", history=history, trainer=SimpleNamespace(findings=[]), seconds=1.5, status=status,
                       stopped_by="early stopping" if status == "stopped" else None)
    assert summary_lines(result)[0] == first_line


def test_the_summary_says_no_findings_once(tmp_path):
    from types import SimpleNamespace

    from trainkit.findings import Finding
    from trainkit.history import History
    from trainkit.run import RunResult, summary_lines

    history = History()
    history.append(0, {"loss": 0.5})
    note = Finding(code="statistics-missing", severity="info", message="m", advice="a")
    for findings, said in (([], ["diagnosis: no findings"]), ([note], ["diagnosis: 1 info", "no findings of severity warning or error"])):
        result = RunResult(run_dir=tmp_path / "r" / "t", history=history, trainer=SimpleNamespace(findings=findings), seconds=1.5)
        lines = "\n".join(summary_lines(result)).splitlines()
        assert [line for line in lines if "findings" in line or line.startswith("diagnosis:")] == said


@pytest.mark.parametrize(("resumed", "batches", "first_line"), [
    (2, 0, "nothing left to train: the run had already trained its 2 epochs: loss 0.2500"),
    (1, 0, "trained 1 more epoch (resumed after epoch 1) in 1.5s: loss 0.2500"),
    (0, 3, "trained 2 epochs (resumed in epoch 1, after 3 of its batches) in 1.5s: loss 0.2500"),
    (1, 1, "trained 1 epoch (resumed in epoch 2, after 1 of its batches) in 1.5s: loss 0.2500"),
])
def test_the_summary_line_of_a_resumed_run_counts_only_what_it_trained(tmp_path, resumed, batches, first_line):
    # Resuming a finished run said "trained 3 epochs" when it trained none; resuming inside the
    # first epoch said "trained 2 epochs", as a fresh run does.
    from types import SimpleNamespace

    from trainkit.history import History
    from trainkit.run import RunResult, summary_lines

    history = History()
    for epoch, loss in enumerate([0.5, 0.25]):
        history.append(epoch, {"loss": loss})
    result = RunResult(run_dir=tmp_path / "r" / "t", history=history, trainer=SimpleNamespace(findings=[]), seconds=1.5,
                       resumed_epochs=resumed, resumed_batches=batches)
    assert summary_lines(result)[0] == first_line


@pytest.mark.parametrize("where", ["preparing", "writing the recipe", "setting up fit"])
def test_ctrl_c_before_training_is_one_line_exit_130_and_leaves_no_run_dir(runner, tiny_recipe, tmp_path, monkeypatch, where):
    # Before fit takes over the signals, Ctrl-C is a KeyboardInterrupt, which typer turned into a
    # silent exit 130, leaving a run directory with nothing to resume in it.
    import trainkit.run
    from trainkit.trainer import Trainer

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "preparing":
        monkeypatch.setattr(trainkit.run, "prepare_run", interrupt)
    elif where == "writing the recipe":
        monkeypatch.setattr(trainkit.run, "write_atomic", interrupt)
    else:
        monkeypatch.setattr(Trainer, "_open_writer", interrupt)
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir)])
    assert result.exit_code == 130
    assert result.stderr.strip() == "interrupted: Stopped before training began; nothing was trained or kept."
    assert not logdir.exists()  # nor the empty <logdir>/<recipe> it made for the run


def test_sigterm_while_a_run_sets_up_stops_it_as_ctrl_c_does_with_exit_143(tiny_recipe, tmp_path, monkeypatch):
    # Its default killed the process (exit 143, no word), leaving a run directory with a recipe
    # and empty events that could not be resumed.
    import os
    import signal

    from trainkit.errors import TrainingInterrupted
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe
    from trainkit.trainer import Trainer

    def terminate(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Trainer, "_open_writer", terminate)
    logdir = tmp_path / "runs"
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as info:
        train_recipe(load_recipe(tiny_recipe), logdir=logdir, verbose=0)
    assert info.value.exit_code == 143 and "nothing was trained" in info.value.message
    assert not logdir.exists()
    assert signal.getsignal(signal.SIGTERM) is before  # put back for whatever runs next


def test_a_second_ctrl_c_while_training_keeps_the_run_directory(runner, tiny_recipe, tmp_path, monkeypatch):
    # Steps ran, no checkpoint yet: what was written (events, recipe) stays, and no message
    # claims nothing was trained.
    from trainkit.interrupt import SecondInterrupt
    from trainkit.trainer import Trainer

    def interrupt(*args, **kwargs):
        raise SecondInterrupt  # what the second Ctrl-C raises while the first one is handled

    monkeypatch.setattr(Trainer, "_write_epoch", interrupt)  # after the first epoch's steps and line
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir)])
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == "interrupted: Stopped by a second Ctrl-C before any checkpoint was written."
    assert "nothing was trained" not in result.stderr
    (run_dir,) = run_dirs(logdir)
    assert (run_dir / "recipe.yaml").exists() and list((run_dir / "train").glob("events.out.tfevents.*"))


def test_ctrl_c_during_check_says_it_stopped_without_mentioning_training(runner, tiny_recipe, monkeypatch):
    import trainkit.run

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainkit.run, "prepare_run", interrupt)
    result = runner.invoke(app, ["check", str(tiny_recipe)])
    assert result.exit_code == 130 and result.stderr.strip() == "interrupted: Stopped."


def test_a_file_in_the_way_of_a_directory_is_named(runner, tiny_recipe, tmp_path):
    in_the_way = tmp_path / "afile"
    in_the_way.write_text("")
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(in_the_way), "-q"])
    assert result.exit_code == 2 and f"{in_the_way} is a file, not a directory" in result.output
    result = runner.invoke(app, ["recipes", str(tiny_recipe)])
    assert result.exit_code == 2 and "is a file: trainkit recipes lists a directory" in result.output


@pytest.mark.parametrize(("args", "words"), [
    (["train"], "Missing argument 'RECIPE'. See trainkit train --help."),
    (["tensorboard", "--port", "abc"], "Invalid value for '--port'"),
    (["trian"], "Did you mean 'train'?"),
    (["train", "r.yaml", "--set"], "Option '--set' requires an argument. See trainkit train --help."),  # click gives no context
])
def test_a_usage_mistake_is_one_error_line_and_exit_2(args, words):
    # Through the console script's main(): typer's own boxed panel used to stand in for the
    # one-line errors every other user error gets.
    proc = subprocess.run([sys.executable, "-m", "trainkit.cli", *args], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: [usage] ") and words in lines[0], proc.stderr


def test_a_run_whose_best_weights_were_restored_says_which_epoch_it_holds(runner, tiny_recipe, tmp_path):
    # The summary and report.json ended on the last epoch's values, not the restored model's.
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q", "--set", "training.epochs=30",
                                 "--set", "optimizer.learning_rate=0.5", "--set", "training.early_stopping={patience: 1}"])
    assert result.exit_code == 0, result.output
    (run_dir,) = run_dirs(logdir)
    report = json.loads((run_dir / "report.json").read_text())
    history = report["history"]
    assert report["status"] == "stopped" and len(history["val_loss"]) < 30
    best = int(np.argmin(history["val_loss"]))
    assert report["restored"]["epoch"] == best + 1 and report["restored"]["val_loss"] == history["val_loss"][best]
    assert f"early stopping restored the weights of epoch {best + 1}: " in result.output
    assert f"s (stopped early after epoch {len(history['val_loss'])} of 30 by early stopping): " in result.output.splitlines()[0]


def test_resuming_a_run_early_stopping_ended_has_nothing_left_to_train(runner, tiny_recipe, tmp_path):
    # The last checkpoint's record said epoch N but not that training had stopped: every resume
    # trained one more epoch (and early stopping stopped it again).
    logdir = tmp_path / "runs"
    args = ["train", str(tiny_recipe), "--logdir", str(logdir), "-q", "--set", "training.epochs=30",
            "--set", "optimizer.learning_rate=0.5", "--set", "training.early_stopping={patience: 1}"]
    assert runner.invoke(app, args).exit_code == 0
    (run_dir,) = run_dirs(logdir)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["status"] == "stopped" and report["epochs_run"] < 30
    result = runner.invoke(app, [*args, "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"nothing left to train: the run had already trained its {report['epochs_run']} epochs"), result.output
    resumed = json.loads((run_dir / "report.json").read_text())
    assert {k: v for k, v in resumed.items() if k != "seconds"} == {k: v for k, v in report.items() if k != "seconds"}


def test_resuming_a_run_a_nan_loss_stopped_does_not_say_it_had_nothing_left_to_train(runner, tmp_path):
    # A linear model whose SGD steps overshoot: the loss overflows in epoch 6 of 10. The resume
    # trained epoch 6 again to the same NaN and said "nothing left to train: the run had already
    # trained its 5 epochs", as for a finished run.
    recipe = tmp_path / "diverges.yaml"
    recipe.write_text("""
name: diverges
task: regression
data: {source: generator, generator: learnable_regression, rows: 100, features: 4, seed: 0, feature_scale: 10.0, feature_distribution: normal}
model: {layers: [{type: dense, units: 1}]}
loss: mse
optimizer: {name: sgd, learning_rate: 0.03}
training: {epochs: 10, batch_size: 20, validation_split: 0, checkpoint_every: 1, jit_compile: false}
""")
    logdir = tmp_path / "runs"
    first = runner.invoke(app, ["train", str(recipe), "--logdir", str(logdir), "-q"])
    assert first.exit_code == 3 and first.output.startswith("trained 5 epochs in "), first.output
    assert "s (stopped early in epoch 6 of 10 by a NaN/inf loss): loss " in first.output.splitlines()[0]
    (run_dir,) = run_dirs(logdir)
    result = runner.invoke(app, ["train", str(recipe), "-q", "--resume", str(run_dir)])
    assert result.exit_code == 3, result.output
    assert result.output.startswith("trained 0 more epochs (resumed after epoch 5)") and "nothing left" not in result.output


def test_a_run_an_error_ends_leaves_a_failed_report_with_its_epochs_so_far(tiny_recipe, tmp_path):
    # A callback raising mid-run left no report.json (the interrupted path wrote one).
    from trainkit import Callback
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    class Boom(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("boom")

    logdir = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="boom"):
        train_recipe(load_recipe(tiny_recipe, ["training.epochs=4"]), logdir=logdir, verbose=0, callbacks=[Boom()])
    (run_dir,) = run_dirs(logdir)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["status"] == "failed" and report["epochs_run"] == 2 and len(report["history"]["loss"]) == 2


def test_a_run_keras_early_stopping_stopped_is_said_stopped_by_early_stopping(tiny_recipe, tmp_path):
    # Only trainkit's EarlyStopping was recognised: Keras's, run through the adapter, was "a callback".
    import keras

    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    recipe = load_recipe(tiny_recipe, ["training.epochs=4"])
    keras_stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)  # no epoch improves by 10
    result = train_recipe(recipe, logdir=tmp_path / "a", verbose=0, callbacks=[keras_stop])
    assert result.status == "stopped" and len(result.history.epoch) == 2 and result.stopped_by == "early stopping"
    assert result.restored_epoch is None  # it keeps the last weights
    # restore_best_weights=True: Keras puts epoch 0's weights back at on_train_end, which the
    # summary did not say (restored_epoch was trainkit's EarlyStopping's alone).
    keras_restore = keras.callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=10.0, restore_best_weights=True)
    restored = train_recipe(recipe, logdir=tmp_path / "c", verbose=0, callbacks=[keras_restore])
    assert restored.status == "stopped" and restored.restored_epoch == 0 and restored.restored_values is not None

    def stop(epoch, logs):
        lambda_stop.model.stop_training = epoch == 1

    lambda_stop = keras.callbacks.LambdaCallback(on_epoch_end=stop)
    other = train_recipe(recipe, logdir=tmp_path / "b", verbose=0, callbacks=[lambda_stop, keras.callbacks.EarlyStopping(monitor="loss", patience=9)])
    assert other.status == "stopped" and len(other.history.epoch) == 2 and other.stopped_by == "a callback"


def test_an_early_stopping_inside_a_list_of_callbacks_is_said_stopped_by_early_stopping(tiny_recipe, tmp_path):
    # fit flattens lists inside the callbacks list; the report's stopped_by and restored_epoch read
    # the list as given, so an EarlyStopping (Keras's or trainkit's) inside one was "a callback".
    import keras

    from trainkit.callbacks import EarlyStopping
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    recipe = load_recipe(tiny_recipe, ["training.epochs=4"])
    keras_stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    result = train_recipe(recipe, logdir=tmp_path / "a", verbose=0, callbacks=[[keras_stop]])
    assert result.status == "stopped" and result.stopped_by == "early stopping"
    own_stop = EarlyStopping(monitor="loss", patience=1, min_delta=10.0, restore_best_weights=True)
    result = train_recipe(recipe, logdir=tmp_path / "b", verbose=0, callbacks=[(own_stop,)])
    assert result.status == "stopped" and result.stopped_by == "early stopping" and result.restored_epoch == 0


def test_a_full_disk_that_ends_a_run_is_said_once_not_again_for_each_file_it_fails(tiny_recipe, tmp_path, monkeypatch, capsys):
    # A real full disk (a small tmpfs) fails every write after the one in flight, not only the big
    # ones a file-size limit fails: the checkpoint's error came with "a second error while ending
    # a run" for the HParams end record and "could not write the report of the failed run".
    import trainkit.run
    import trainkit.tensorboard_logging
    from trainkit.checkpoint import TrainingCheckpoint
    from trainkit.errors import RunDirError
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    for owner, name in ((TrainingCheckpoint, "save"), (trainkit.tensorboard_logging, "write_session_end"), (trainkit.run, "write_report")):
        monkeypatch.setattr(owner, name, _disk_full)
    with pytest.raises(RunDirError) as info:
        train_recipe(load_recipe(tiny_recipe, ["training.checkpoint_every=1"]), logdir=tmp_path, verbose=0)
    assert info.value.code == "logdir-unwritable" and "No space left on device" in info.value.message
    assert capsys.readouterr().err == ""

    # Another failure while ending it is still said beside the disk's.
    monkeypatch.setattr(trainkit.run, "write_report", lambda *args: 1 / 0)
    with pytest.raises(RunDirError, match="logdir-unwritable"):
        train_recipe(load_recipe(tiny_recipe, ["training.checkpoint_every=1"]), logdir=tmp_path, verbose=0)
    assert "could not write the report of the failed run: ZeroDivisionError" in capsys.readouterr().err


def test_a_resume_that_fails_before_its_checkpoint_came_back_keeps_the_report(tiny_recipe, tmp_path):
    from trainkit.errors import RunDirError
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    recipe = load_recipe(tiny_recipe, ["training.checkpoint_every=1"])
    run_dir = train_recipe(recipe, logdir=tmp_path, verbose=0).run_dir
    report = (run_dir / "report.json").read_text()
    for data in (run_dir / "checkpoints").glob("ckpt-*.data-*"):
        os.truncate(data, 20)
    with pytest.raises(RunDirError, match="checkpoint-corrupt"):
        train_recipe(recipe, logdir=tmp_path, verbose=0, resume=run_dir)
    assert (run_dir / "report.json").read_text() == report


@pytest.mark.parametrize(("value", "text"), [(0.1, "0.1000"), (0.97875, "0.9788"), (1234.5, "1234"), (5000.0, "5000"),
                                             (3.0, "3.000"), (1e-5, "1.000e-05"), (float("nan"), "nan")])
def test_epoch_values_keep_four_digits_and_no_bare_point(value, text):
    from trainkit.writers.console import format_logs

    assert format_logs({"loss": value}) == f"loss {text}"


def test_help_reflows_paragraphs_and_shows_flags_without_a_type():
    # Rich help kept the docstrings' line breaks (ragged paragraphs) and showed "-q <bool>", as if
    # the flag took a value.
    proc = subprocess.run([sys.executable, "-m", "trainkit.cli", "compare", "--help"], capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "COLUMNS": "100"})
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "<logdir>/<recipe>-<key>=<value>/<time>/" in text and "The table shows the hyperparameters that differ" in text
    assert "<bool>" not in proc.stdout and "--set KEY=VALUE" in proc.stdout and "-q, --quiet" in proc.stdout
    paragraph = proc.stdout.split("\n\n")[2].splitlines()  # "Each run gets ...": reflowed, not the docstring's lines
    assert all(len(line) > 50 for line in paragraph[1:-1]), paragraph  # the first breaks before the long path


def test_the_recipe_logging_section_reaches_the_trainer(tiny_recipe, tmp_path):
    # logging.statistics and logging.histograms_every were validated and then ignored.
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    recipe = load_recipe(tiny_recipe, ["logging.statistics=false", "logging.histograms_every=2", "training.epochs=1"])
    result = train_recipe(recipe, logdir=tmp_path / "runs", verbose=0)
    assert result.trainer.statistics is False and result.trainer.histograms_every == 2
    names = {name for _, name, _ in result.trainer.step_table()}
    assert "loss" in names and not any("grad" in name for name in names)
    default = train_recipe(load_recipe(tiny_recipe, ["training.epochs=1"]), logdir=tmp_path / "runs", verbose=0)
    assert any("grad" in name for _, name, _ in default.trainer.step_table())


def test_the_quiet_import_hides_tensorflow_info_lines_but_not_its_warnings():
    # Level 2 (the earlier default) hid TensorFlow's C++ warnings for the whole run.
    code = "import os; from trainkit.quiet import import_tensorflow_quietly; import_tensorflow_quietly(); print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True, env=env)
    assert proc.stdout.strip() == "1"
    mine = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True, env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert mine.stdout.strip() == "3"  # the user's own setting wins


def test_the_cli_imports_tensorflow_without_full_collections_and_freezes_what_it_built():
    # Each full collection during the import walked every object made so far (~0.3 s in all).
    code = ("import gc; passes = []; gc.callbacks.append(lambda phase, info: passes.append(info['generation']) if phase == 'stop' else None); "
            "from trainkit.quiet import import_tensorflow_quietly; import_tensorflow_quietly(); "
            "print(gc.isenabled(), gc.get_freeze_count() > 100_000, passes.count(2))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert proc.stdout.split() == ["True", "True", "0"]


def test_lasting_imports_leave_a_collector_the_user_turned_off_off():
    import gc

    from trainkit.quiet import lasting_imports

    frozen = gc.get_freeze_count()
    gc.disable()
    try:
        with lasting_imports():
            kept = [[] for _ in range(10)]
        assert not gc.isenabled()
        assert gc.get_freeze_count() >= frozen + len(kept)
    finally:
        gc.enable()


def test_reports_and_recipes_are_readable_like_any_file_the_user_writes(runner, tiny_recipe, tmp_path):
    # write_atomic's temporary file made recipe.yaml, report.json and checkpoint records 0600.
    import stat

    (tmp_path / "reference.txt").write_text("x")  # what a plain open() makes under this umask
    expected = stat.S_IMODE((tmp_path / "reference.txt").stat().st_mode)
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    (run_dir,) = run_dirs(tmp_path / "runs")
    written = [run_dir / "report.json", run_dir / "recipe.yaml", *(run_dir / "checkpoints").glob("*.json")]
    assert len(written) > 2 and {stat.S_IMODE(path.stat().st_mode) for path in written} == {expected}


@pytest.mark.parametrize(("where", "says"), [
    # Loading the data, building the model: it said "nothing was trained or kept", a new run's
    # words (whose directory is removed), of a run directory that stays, and resumes.
    ("prepare_run", "Stopped before training began; nothing was trained, and {run_dir} is kept as it was: resume it again."),
    # Reading its checkpoint, tracing its step: the signals are not taken over yet, and one
    # Ctrl-C there was "Stopped by a second Ctrl-C".
    ("_open_writer", "Stopped by Ctrl-C; a checkpoint was written earlier. Resume with: "),
])
def test_one_ctrl_c_while_a_resume_sets_up_says_what_is_kept(runner, tiny_recipe, tmp_path, monkeypatch, where, says):
    import trainkit.run
    from trainkit.trainer import Trainer

    logdir = tmp_path / "runs"
    args = ["train", str(tiny_recipe), "--logdir", str(logdir), "-q", "--set", "training.checkpoint_every=1"]
    assert runner.invoke(app, [*args, "--set", "training.epochs=1"]).exit_code == 0
    (run_dir,) = run_dirs(logdir)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainkit.run if where == "prepare_run" else Trainer, where, interrupt)
    result = runner.invoke(app, [*args, "--set", "training.epochs=2", "--resume", str(run_dir)])
    assert result.exit_code == 130
    assert result.stderr.startswith(f"interrupted: {says.format(run_dir=run_dir)}"), result.stderr
    monkeypatch.undo()
    again = runner.invoke(app, [*args, "--set", "training.epochs=2", "--resume", str(run_dir)])
    assert again.exit_code == 0 and again.output.startswith("trained 1 more epoch (resumed after epoch 1)"), again.output


def test_a_resume_names_the_setting_that_differs_and_may_add_epochs(runner, tiny_recipe, tmp_path):
    # Any change was "a different recipe (see recipe.yaml)", and a finished run could not be
    # trained further.
    logdir = tmp_path / "runs"
    args = ["train", str(tiny_recipe), "--logdir", str(logdir), "-q", "--set", "training.checkpoint_every=1"]
    assert runner.invoke(app, [*args, "--set", "training.epochs=2"]).exit_code == 0
    (run_dir,) = run_dirs(logdir)
    changed = runner.invoke(app, [*args, "--set", "training.epochs=2", "--set", "optimizer.learning_rate=0.05", "--resume", str(run_dir)])
    assert changed.exit_code == 2
    assert "optimizer.learning_rate = 0.01, not 0.05" in changed.output and "--set optimizer.learning_rate=0.01" in changed.output
    # How often it checkpoints changes nothing it computes: it was refused as another recipe.
    more = runner.invoke(app, [*args, "--set", "training.epochs=3", "--set", "training.checkpoint_every=2", "--resume", str(run_dir)])
    assert more.exit_code == 0, more.output
    assert more.output.startswith("trained 1 more epoch (resumed after epoch 2)")
    assert json.loads((run_dir / "report.json").read_text())["epochs_run"] == 3
    assert "epochs: 3" in (run_dir / "recipe.yaml").read_text()  # the next resume compares with 3
    # Fewer epochs than it trained was accepted, trained nothing and left "epochs: 1" in recipe.yaml.
    fewer = runner.invoke(app, [*args, "--set", "training.epochs=1", "--resume", str(run_dir)])
    assert fewer.exit_code == 2 and "[resume-mismatch]" in fewer.output and "already trained 3 epochs" in fewer.output
    assert "epochs: 3" in (run_dir / "recipe.yaml").read_text()
    again = runner.invoke(app, [*args, "--set", "training.epochs=3", "--resume", str(run_dir)])
    assert again.exit_code == 0 and again.output.startswith("nothing left to train"), again.output
    assert "checkpoint_every: 1" in (run_dir / "recipe.yaml").read_text()


def test_a_resume_whose_recipe_gives_other_epochs_than_the_run_says_so_once(runner, tiny_recipe, tmp_path):
    # A run started with --set training.epochs=1 and resumed with the bare recipe (2 epochs) trained
    # on to 2 without a word; epochs given with --set are what the user asked for: no line.
    logdir = tmp_path / "runs"
    args = ["train", str(tiny_recipe), "--logdir", str(logdir), "-q", "--set", "training.checkpoint_every=1"]
    assert runner.invoke(app, [*args, "--set", "training.epochs=1"]).exit_code == 0
    (run_dir,) = run_dirs(logdir)
    bare = runner.invoke(app, [*args, "--resume", str(run_dir)])
    assert bare.exit_code == 0, bare.output
    notes = [line for line in bare.stderr.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {run_dir} was started with training.epochs = 1; the recipe says 2, so this resume trains on to epoch 2. "
                     "To keep 1, resume with --set training.epochs=1."]
    assert bare.stdout.startswith("trained 1 more epoch (resumed after epoch 1)")
    given = runner.invoke(app, [*args, "--set", "training.epochs=3", "--resume", str(run_dir)])
    assert given.exit_code == 0 and "note:" not in given.output, given.output
    # The bare recipe's 2 is fewer than the 3 it trained: refused, and no note that it trains to 2.
    fewer = runner.invoke(app, [*args, "--resume", str(run_dir)])
    assert fewer.exit_code == 2 and "[resume-mismatch]" in fewer.output and "note:" not in fewer.output, fewer.output


def test_a_resume_note_on_epochs_is_kept_for_a_training_override_without_them(runner, tiny_recipe, tmp_path):
    # Any --set training=... kept the note away: one without epochs put the default 10 in, and the
    # run started with 1 trained on to 10 without a word.
    logdir = tmp_path / "runs"
    args = ["train", str(tiny_recipe), "--logdir", str(logdir), "-q"]
    assert runner.invoke(app, [*args, "--set", "training.checkpoint_every=1", "--set", "training.epochs=1"]).exit_code == 0
    (run_dir,) = run_dirs(logdir)
    training = "training={batch_size: 32, jit_compile: false, checkpoint_every: 1"
    given = runner.invoke(app, [*args, "--set", training + ", epochs: 1}", "--resume", str(run_dir)])
    assert given.exit_code == 0 and "note:" not in given.output, given.output
    without = runner.invoke(app, [*args, "--set", training + "}", "--resume", str(run_dir)])
    assert without.exit_code == 0, without.output
    notes = [line for line in without.stderr.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {run_dir} was started with training.epochs = 1; the recipe says 10, so this resume trains on to epoch 10. "
                     "To keep 1, resume with --set training.epochs=1."]


def test_a_resume_with_more_epochs_updates_the_hparams_record_and_the_recipe_text(runner, tiny_recipe, tmp_path):
    # Both still said the old epochs: the HParams dashboard showed "epochs 2" for a 3-epoch run.
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    logdir = tmp_path / "runs"
    args = ["train", str(tiny_recipe), "--logdir", str(logdir), "-q", "--set", "training.checkpoint_every=1"]
    assert runner.invoke(app, [*args, "--set", "training.epochs=2"]).exit_code == 0
    (run_dir,) = run_dirs(logdir)
    assert runner.invoke(app, [*args, "--set", "training.epochs=3", "--resume", str(run_dir)]).exit_code == 0
    (record,) = run_dir.glob("events.out.tfevents.*.hparams")
    root = EventAccumulator(str(record)).Reload()
    data = plugin_data_pb2.HParamsPluginData.FromString(root.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    assert data.session_start_info.hparams["epochs"].number_value == 3
    train = EventAccumulator(str(run_dir / "train"), size_guidance={"tensors": 0}).Reload()
    texts = [tf.make_ndarray(e.tensor_proto).item().decode() for e in train.Tensors("recipe/text_summary")]
    assert "epochs: 2" in texts[0] and "epochs: 3" in texts[-1] and len(texts) == 2


def test_a_resume_with_another_recipe_names_the_recipe_it_was_trained_from(runner, tiny_recipe, tmp_path):
    # It advised --set name=tiny, as if the name were the one setting to change.
    logdir = tmp_path / "runs"
    assert runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q", "--set", "training.checkpoint_every=1"]).exit_code == 0
    (run_dir,) = run_dirs(logdir)
    other = tmp_path / "other.yaml"
    other.write_text(TINY.replace("name: tiny", "name: other").replace("units: 4", "units: 6"))
    result = runner.invoke(app, ["train", str(other), "--logdir", str(logdir), "-q", "--resume", str(run_dir)])
    assert result.exit_code == 2 and "[resume-mismatch]" in result.output
    assert "was trained from the recipe tiny, not other" in result.output and "--set name" not in result.output


def test_a_resume_without_its_recipe_yaml_is_checked_against_the_metrics_as_from_python(runner, tiny_recipe, tmp_path):
    # recipe.yaml gone, the recipe's hparams hold no metrics: [auc] for [accuracy] failed the
    # restore as "holds 2 metrics variables, this run has 402". Told as a Python resume is, with
    # a recipe's advice.
    logdir = tmp_path / "runs"
    assert runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q", "--set", "training.checkpoint_every=1"]).exit_code == 0
    (run_dir,) = run_dirs(logdir)
    (run_dir / "recipe.yaml").unlink()
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q", "--resume", str(run_dir), "--set", "metrics=[auc]"])
    assert result.exit_code == 2 and "[resume-mismatch]" in result.output, result.output
    assert "was trained with metrics = [accuracy], not [auc]. Resume with the same recipe and --set options" in " ".join(result.output.split())


def test_a_resume_mismatch_advises_a_set_that_can_be_pasted(runner, tiny_recipe, tmp_path):
    # The --set that puts a mapping back was printed unquoted, --set training.early_stopping={monitor:
    # val_loss, ...}: pasted, the shell cut it at its first space.
    import shlex

    logdir = tmp_path / "runs"
    args = ["train", str(tiny_recipe), "--logdir", str(logdir), "-q", "--set", "training.checkpoint_every=1"]
    assert runner.invoke(app, [*args, "--set", "training.early_stopping={patience: 3}"]).exit_code == 0
    (run_dir,) = run_dirs(logdir)
    result = runner.invoke(app, [*args, "--resume", str(run_dir)])
    assert result.exit_code == 2 and "[resume-mismatch]" in result.output, result.output
    advice = result.output.split("--set options (", 1)[1].split("), or start a new run.", 1)[0]
    words = shlex.split(advice)
    assert words[0] == "--set" and len(words) == 2 and words[1].startswith("training.early_stopping={"), advice
    assert runner.invoke(app, [*args, *words, "--resume", str(run_dir)]).exit_code == 0  # the advice, pasted
    plain = runner.invoke(app, [*args, "--set", "training.early_stopping={patience: 3}", "--set", "optimizer.learning_rate=0.05", "--resume", str(run_dir)])
    assert "(--set optimizer.learning_rate=0.01)" in plain.output, plain.output  # a plain word stays unquoted


@pytest.mark.parametrize("damage", ["missing", "not-yaml", "not-utf8"])
def test_a_refused_resume_leaves_the_run_s_recipe_as_it_was(runner, tiny_recipe, tmp_path, damage):
    # Without (or with a damaged) recipe.yaml, a resume with another learning rate was refused by
    # the checkpoint's settings, but wrote its own recipe first: the right resume was then refused.
    # A damaged recipe.yaml was a YAML or UnicodeDecodeError traceback.
    logdir = tmp_path / "runs"
    args = ["train", str(tiny_recipe), "--logdir", str(logdir), "-q", "--set", "training.checkpoint_every=1"]
    assert runner.invoke(app, [*args, "--set", "training.epochs=2"]).exit_code == 0
    (run_dir,) = run_dirs(logdir)
    saved = run_dir / "recipe.yaml"
    {"missing": saved.unlink, "not-yaml": lambda: saved.write_text("name: [unclosed"), "not-utf8": lambda: saved.write_bytes(b"\xff\xfe\x00")}[damage]()
    before = saved.read_bytes() if saved.exists() else None
    changed = runner.invoke(app, [*args, "--set", "training.epochs=3", "--set", "optimizer.learning_rate=0.05", "--resume", str(run_dir)])
    assert changed.exit_code == 2 and "[resume-mismatch]" in changed.output and "Traceback" not in changed.output
    assert (saved.read_bytes() if saved.exists() else None) == before
    # How often it checkpoints changes nothing it computes: it was refused as another recipe.
    more = runner.invoke(app, [*args, "--set", "training.epochs=3", "--set", "training.checkpoint_every=2", "--resume", str(run_dir)])
    assert more.exit_code == 0, more.output
    assert "epochs: 3" in saved.read_text()


def test_a_run_directory_removed_while_training_is_not_reported_as_a_whole_run(tiny_recipe, tmp_path, capsys):
    # rm -rf of the run directory mid-run ended in "run written to ..." and exit 0, nothing else.
    import shutil

    from trainkit.callbacks import Callback
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    class RemoveTheRun(Callback):
        def on_epoch_end(self, epoch, logs=None):
            shutil.rmtree(self.trainer.logdir / "train", ignore_errors=True)
            (self.trainer.logdir / "recipe.yaml").unlink(missing_ok=True)

    result = train_recipe(load_recipe(tiny_recipe), logdir=tmp_path / "runs", verbose=0, callbacks=[RemoveTheRun()])
    err = capsys.readouterr().err
    assert "lost its TensorBoard events (train/)" in err and "lost recipe.yaml" in err and (result.run_dir / "report.json").exists()
    assert err.count("[run-dir-changed]") == 2


def test_a_resumed_run_whose_directory_is_removed_while_training_is_not_reported_as_a_whole_run(tiny_recipe, tmp_path, capsys):
    # Only a new run was warned of: a resume whose run directory was removed mid-run recreated
    # checkpoints/ and report.json and said "run written to", its train/ events gone.
    import shutil

    from trainkit.callbacks import Callback
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    recipe = load_recipe(tiny_recipe, overrides=["training.checkpoint_every=1", "training.epochs=1"])
    run_dir = train_recipe(recipe, logdir=tmp_path / "runs", verbose=0).run_dir
    capsys.readouterr()

    class RemoveTheRun(Callback):
        def on_epoch_end(self, epoch, logs=None):
            shutil.rmtree(self.trainer.logdir)

    more = load_recipe(tiny_recipe, overrides=["training.checkpoint_every=1", "training.epochs=2"])
    train_recipe(more, verbose=0, resume=run_dir, callbacks=[RemoveTheRun()])
    assert f"warning: [run-dir-changed] {run_dir} lost its TensorBoard events (train/) while the run trained" in capsys.readouterr().err


def test_a_stop_signal_while_a_finished_run_ends_still_gets_its_report(tiny_recipe, tmp_path):
    # SIGTERM during the end-of-run diagnosis killed the process (exit 143) without report.json.
    import os
    import signal

    from trainkit.callbacks import Callback
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    class TermAtTheEnd(Callback):
        def on_train_end(self, logs=None):
            os.kill(os.getpid(), signal.SIGTERM)

    result = train_recipe(load_recipe(tiny_recipe), logdir=tmp_path / "runs", verbose=0, callbacks=[TermAtTheEnd()])
    assert json.loads((result.run_dir / "report.json").read_text())["status"] == "completed"


def test_first_difference_walks_mappings_and_lists():
    from trainkit.run import first_difference

    then = {"model": {"layers": [{"units": 4}, {"units": 1}]}, "training": {"epochs": 2}}
    assert first_difference(then, {"model": {"layers": [{"units": 8}, {"units": 1}]}, "training": {"epochs": 2}}) == ("model.layers.0.units", 4, 8)
    assert first_difference(then, {**then, "training": {"epochs": 5}}, ignore=frozenset({"training.epochs"})) is None
    assert first_difference(then, {**then, "metrics": ["auc"]}) == ("metrics", None, ["auc"])
    assert first_difference({"a": 1}, {"a": 1.0}) == ("a", 1, 1.0)


def test_diagnose_says_when_the_event_files_hold_fewer_epochs_than_the_report(runner, tiny_recipe, tmp_path):
    # A validation events file deleted, or the train one cut short: "diagnosis: no findings" beside
    # a report.json that listed every epoch (and had findings), without a word.
    logdir = tmp_path / "runs"
    assert runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q", "--set", "training.epochs=3"]).exit_code == 0
    (run_dir,) = run_dirs(logdir)
    whole = runner.invoke(app, ["diagnose", str(run_dir), "--json"])
    assert whole.exit_code == 0 and json.loads(whole.output)["incomplete"] is None
    for events in (run_dir / "validation").glob("events.out.tfevents.*"):
        events.unlink()
    cut = runner.invoke(app, ["diagnose", str(run_dir)])
    assert cut.exit_code == 0 and cut.output.splitlines()[1] == (
        "incomplete: report.json lists 3 epochs, but the event files hold 0 in validation/ (deleted or cut short since): "
        "the findings below are those of the epochs they hold; report.json has the run's own.")


def test_diagnose_says_when_a_run_did_not_finish(runner, tiny_recipe, tmp_path):
    # An interrupted run's findings were printed as if the run were complete.
    logdir = tmp_path / "runs"
    assert runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q"]).exit_code == 0
    (run_dir,) = run_dirs(logdir)
    finished = runner.invoke(app, ["diagnose", str(run_dir)])
    assert finished.exit_code == 0 and "unfinished" not in finished.output
    report = json.loads((run_dir / "report.json").read_text())
    (run_dir / "report.json").write_text(json.dumps({**report, "status": "interrupted", "epochs_run": 1}))
    cut = runner.invoke(app, ["diagnose", str(run_dir)])
    assert f"unfinished: the run was interrupted after 1 of 2 epochs; resume it with trainkit train RECIPE --resume {run_dir}" in cut.output
    for damaged in ("[1, 2]", '{"status": "compl'):  # an AttributeError traceback, or nothing said
        (run_dir / "report.json").write_text(damaged)
        said = runner.invoke(app, ["diagnose", str(run_dir)])
        assert said.exit_code == 0 and "report.json does not read back" in said.output
    (run_dir / "report.json").unlink()  # killed: no report at all
    killed = runner.invoke(app, ["diagnose", str(run_dir), "--json"])
    assert json.loads(killed.output)["unfinished"].startswith("unfinished: the run's process ended without its report.json (killed, or failed before writing it")
    # Still training: its lock is held. (Both read "has no report.json (still training, or its
    # process was killed)".)
    from trainkit.run_lock import exclusive

    with exclusive(run_dir):
        training = runner.invoke(app, ["diagnose", str(run_dir)])
    assert f"unfinished: the run is still training (process {os.getpid()}): these are the findings of its events so far" in training.output
    (run_dir / ".trainkit.lock").unlink()  # a run from before the lock: it cannot be told
    unknown = runner.invoke(app, ["diagnose", str(run_dir), "--json"])
    assert json.loads(unknown.output)["unfinished"].startswith("unfinished: the run has no report.json (still training, or its process was killed)")


def test_resume_of_a_run_stopped_before_its_first_checkpoint_says_so(runner, tiny_recipe, tmp_path):
    # Killed in its first epoch (or failed by a full disk): the message said the run directory had
    # "no checkpoints/ directory" and to "pass a run directory written by trainkit train", which it is.
    run_dir = tmp_path / "runs" / "tiny" / "20250101-000000"
    (run_dir / "train").mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text("name: tiny\n")
    result = runner.invoke(app, ["train", str(tiny_recipe), "--resume", str(run_dir)])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == (f"error: [no-checkpoint] Nothing to resume in {run_dir}: the run stopped before its first checkpoint "
                                     "(written at the end of an epoch, by training.checkpoint_every), so it has nothing to continue "
                                     "from. Train the recipe again without --resume.")
    # Still training, before its first checkpoint (its lock held): it was told it had stopped and to
    # train the recipe again without --resume, a second run beside the one that trains.
    from trainkit.run_lock import exclusive

    with exclusive(run_dir):
        training = runner.invoke(app, ["train", str(tiny_recipe), "--resume", str(run_dir)])
    assert training.exit_code == 2 and training.output.startswith(f"error: [run-dir-in-use] {run_dir} is being trained by another "
                                                                  f"trainkit fit (process {os.getpid()})"), training.output
    # A run that kept no checkpoints (finished, even) was told it "stopped before its first checkpoint".
    (run_dir / "recipe.yaml").write_text("name: tiny\ntraining: {checkpoint_every: 0}\n")
    off = runner.invoke(app, ["train", str(tiny_recipe), "--resume", str(run_dir)])
    assert off.exit_code == 2 and "it was trained with training.checkpoint_every: 0, which keeps no checkpoints" in off.output, off.output
    (run_dir / "checkpoints").write_text("x")  # something in the way of its checkpoints is no run stopped early
    in_the_way = runner.invoke(app, ["train", str(tiny_recipe), "--resume", str(run_dir)])
    assert in_the_way.exit_code == 2 and "before its first checkpoint" not in in_the_way.output, in_the_way.output


@pytest.mark.parametrize(("where", "says"), [
    ("nope", "it does not exist"),
    ("a-file", "it is a file, not a run directory"),
    ("runs/tiny", "it holds runs, not checkpoints; pass one of them, e.g. the newest, "),
    # a path inside a run said only "it has no checkpoints/ directory" (its checkpoints/ itself too)
    ("runs/tiny/20250101-000000/checkpoints", "it is inside the run directory "),
    ("runs/tiny/20250101-000000/train", "it is inside the run directory "),
    ("runs/tiny/20250101-000000/report.json", "it is inside the run directory "),
])
def test_resume_says_why_a_path_is_no_run_to_resume(runner, tiny_recipe, tmp_path, where, says):
    (tmp_path / "a-file").write_text("x")
    for run in ("20250101-000000", "20250102-000000"):
        (tmp_path / "runs" / "tiny" / run / "checkpoints").mkdir(parents=True)
    (tmp_path / "runs" / "tiny" / "20250101-000000" / "train").mkdir()
    (tmp_path / "runs" / "tiny" / "20250101-000000" / "report.json").write_text("{}")
    if "inside" in says:
        run_dir = tmp_path / "runs" / "tiny" / "20250101-000000"
        says += f"{run_dir}; pass that directory (--resume {run_dir})"
    result = runner.invoke(app, ["train", str(tiny_recipe), "--resume", str(tmp_path / where)])
    assert result.exit_code == 2 and result.output.startswith("error: [no-checkpoint]"), result.output
    assert says in result.output and "no checkpoints/ directory" not in result.output
    if where == "runs/tiny":
        assert result.output.rstrip().endswith("20250102-000000. Pass a run directory written by trainkit train (<logdir>/<recipe>/<time>).")


def test_resume_of_a_recipe_folder_names_its_newest_run_past_nine_in_one_second(runner, tiny_recipe, tmp_path):
    # By name, <time>-9 sorted after <time>-10 and was named "the newest" (diagnose takes -10).
    for run in ("20250102-000000", "20250102-000000-9", "20250102-000000-10"):
        (tmp_path / "runs" / "tiny" / run / "checkpoints").mkdir(parents=True)
    result = runner.invoke(app, ["train", str(tiny_recipe), "--resume", str(tmp_path / "runs" / "tiny")])
    assert result.exit_code == 2 and "e.g. the newest, " in result.output, result.output
    assert result.output.rstrip().endswith("20250102-000000-10. Pass a run directory written by trainkit train (<logdir>/<recipe>/<time>).")


def test_diagnose_of_event_files_it_cannot_read_says_so_instead_of_no_findings(runner, tmp_path):
    (tmp_path / "run" / "train").mkdir(parents=True)
    (tmp_path / "run" / "train" / "events.out.tfevents.123.host").write_text("garbage")
    result = runner.invoke(app, ["diagnose", str(tmp_path / "run")])
    assert result.exit_code == 2 and result.output.startswith("error: [run-not-found]")
    assert "hold no trainkit events that can be read" in result.output and "no findings" not in result.output


def test_diagnose_of_a_file_says_it_is_no_run_directory(runner, tmp_path):
    (tmp_path / "a-file").write_text("x")
    result = runner.invoke(app, ["diagnose", str(tmp_path / "a-file")])
    assert result.exit_code == 2 and result.output.startswith("error: [run-not-found]")
    assert "is a file, not a run directory" in result.output and "TensorBoard events" not in result.output


def test_a_recipe_run_s_diagnosis_knows_what_its_data_checks_found(tiny_recipe, tmp_path):
    # The recipe's checks ran before fit(check_data=False), which then forgot their codes: the
    # advice for scaled inputs and for a leak the checks found never applied to trainkit train.
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    result = train_recipe(load_recipe(tiny_recipe, ["data.leak_label=true"]), logdir=tmp_path / "runs", verbose=0)
    context = result.trainer._live_diagnosis.diagnoser.context
    assert context.check_codes is not None and "label-leakage" in context.check_codes


def test_what_reading_a_csv_noticed_is_in_the_run_s_report(runner, tmp_path):
    # The index-column and id-column notes were bare stderr lines: not in report.json, and printed
    # again for every variant of a compare.
    rows = "".join(f"{i},{(i * 7) % 5},{(i * 3) % 4},{i % 2}\n" for i in range(40))
    (tmp_path / "data.csv").write_text(",a,b,label\n" + rows)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: binary\ndata: {source: csv, path: data.csv, target: label}\n"
                      "model: {layers: [{type: dense, units: 1, activation: sigmoid}]}\nloss: binary_crossentropy\ntraining: {epochs: 1}\n")
    result = runner.invoke(app, ["train", str(recipe), "--logdir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    (run_dir,) = run_dirs(tmp_path / "runs")
    report = json.loads((run_dir / "report.json").read_text())
    assert "data-index-column" in [f["code"] for f in report["findings"]]


def test_the_hparams_dashboard_knows_which_runs_finished(runner, tiny_recipe, tmp_path):
    # Every run was of unknown status: filtering the dashboard to the finished runs showed none.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    from trainkit.writers.hparams import write_session_end

    logdir = tmp_path / "runs"
    assert runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q", "--set", "training.epochs=1"]).exit_code == 0
    (run_dir,) = run_dirs(logdir)

    def status() -> int | None:
        root = EventAccumulator(str(run_dir)).Reload()
        content = root.PluginTagToContent("hparams").get("_hparams_/session_end_info")
        return plugin_data_pb2.HParamsPluginData.FromString(content).session_end_info.status if content else None

    assert status() == api_pb2.STATUS_SUCCESS
    write_session_end(run_dir, "interrupted")  # a resumed run interrupted: its old ending is gone
    assert status() is None and not list(run_dir.glob("*.hparams_end"))
    write_session_end(run_dir, "nan-loss")
    assert status() == api_pb2.STATUS_FAILURE and len(list(run_dir.glob("*.hparams_end"))) == 1


def test_commands_printed_to_paste_back_quote_paths_with_spaces(runner, tiny_recipe, tmp_path, monkeypatch):
    # "Resume with: ... --resume /data/my runs/tiny/..." pasted back gave --resume "/data/my" and
    # a stray argument; so did the summary's tensorboard command and diagnose's resume hint.
    import shlex
    from types import SimpleNamespace

    import trainkit.run
    from trainkit.diagnosis.readback import unfinished_note
    from trainkit.errors import TrainingInterrupted
    from trainkit.history import History
    from trainkit.run import RunResult, summary_lines

    run_dir = tmp_path / "my runs" / "tiny" / "20250101-000000"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "ckpt-1.json").write_text("{}")
    (run_dir / "recipe.yaml").write_text("training: {epochs: 2}\n")
    (run_dir / "report.json").write_text(json.dumps({"status": "interrupted", "epochs_run": 1}))

    def interrupted(*args, **kwargs):
        err = TrainingInterrupted("interrupted", "Training stopped by SIGINT in epoch 2; a checkpoint was written.", exit_code=130)
        err.run_dir = run_dir
        raise err

    monkeypatch.setattr(trainkit.run, "train_recipe", interrupted)
    result = runner.invoke(app, ["train", str(tiny_recipe)])
    assert result.exit_code == 130
    assert shlex.split(result.stderr.split("Resume with: ")[1])[-2:] == ["--resume", str(run_dir)]

    note = unfinished_note(run_dir)
    assert note is not None and shlex.split(note.split("resume it with ")[1].split(" (")[0])[-2:] == ["--resume", str(run_dir)]

    history = History()
    history.append(0, {"loss": 0.5})
    done = RunResult(run_dir=run_dir, history=history, trainer=SimpleNamespace(findings=[]), seconds=1.5)
    command = summary_lines(done)[-1].split("(", 1)[1].rstrip(")")
    assert shlex.split(command) == ["trainkit", "tensorboard", str(tmp_path / "my runs")]


def test_resuming_a_run_directory_that_cannot_be_written_is_refused_before_anything_is_built(runner, tiny_recipe, tmp_path, monkeypatch):
    # A read-only run directory (a run copied from another account, an archive mounted read-only)
    # was a PermissionError traceback from the lock file; a read-only event file or checkpoints/
    # failed the resumed run after its checkpoint had loaded.
    logdir = tmp_path / "runs"
    args = ["train", str(tiny_recipe), "--logdir", str(logdir), "-q"]
    assert runner.invoke(app, args).exit_code == 0
    (run_dir,) = run_dirs(logdir)
    report = (run_dir / "report.json").read_text()
    (events,) = (run_dir / "train").glob("events.out.tfevents.*")
    real_access = os.access
    # chmod binds no one when the tests run as root: the file reads as not writable instead.
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != events and real_access(path, mode, **kw))
    result = runner.invoke(app, [*args, "--set", "training.epochs=4", "--resume", str(run_dir)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: [logdir-unwritable] Cannot resume {run_dir}: {events} cannot be written (Permission denied)")
    assert "chmod -R u+w" in result.output and len(result.output.strip().splitlines()) == 1
    assert (run_dir / "report.json").read_text() == report


@pytest.mark.parametrize(("call", "error", "says"), [
    ("open", errno.EACCES, "Permission denied"),
    # The holder's pid is the first byte a fit writes: on a full disk it was a bare OSError
    # traceback from fit (and from a resume), not the logdir-unwritable every other write gives.
    ("write", errno.ENOSPC, "No space left on device"),
], ids=["lock-file-not-made", "disk-full-at-its-pid"])
def test_a_lock_file_that_cannot_be_made_or_written_is_a_coded_error(tmp_path, monkeypatch, call, error, says):
    import trainkit.run_lock
    from trainkit.errors import RunDirError

    def refuse(*args, **kwargs):
        raise OSError(error, says)

    monkeypatch.setattr(trainkit.run_lock.os, call, refuse)
    with pytest.raises(RunDirError, match=f"Cannot write to the log directory .*: {says}") as info, trainkit.run_lock.exclusive(tmp_path):
        pass
    assert info.value.code == "logdir-unwritable"


def test_a_logdir_that_does_not_hold_the_run_to_resume_is_a_usage_error(runner, tiny_recipe, tmp_path):
    # --logdir was ignored without a word: the resumed run went on in RUN_DIR, not where asked.
    run_dir = tmp_path / "runs" / "tiny" / "20250101-000000"
    (run_dir / "checkpoints").mkdir(parents=True)
    result = runner.invoke(app, ["train", str(tiny_recipe), "--resume", str(run_dir), "--logdir", str(tmp_path / "elsewhere")])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: [usage] --resume {run_dir} is not under --logdir {tmp_path / 'elsewhere'}")
    assert not (tmp_path / "elsewhere").exists()
    # The logdir that holds it, however spelt, is no contradiction (the resume then goes on to its checks).
    same = runner.invoke(app, ["train", str(tiny_recipe), "--resume", str(run_dir), "--logdir", str(tmp_path / "runs" / ".." / "runs")])
    assert "[usage]" not in same.output


def _sigterm_when_called(module: str, function: str, args: list[str]) -> subprocess.CompletedProcess:
    """``trainkit ARGS`` in a process of its own, whose ``module.function`` sends it SIGTERM."""
    script = ("import importlib, os, signal, sys\n"
              "import trainkit.cli as cli\n"
              f"setattr(importlib.import_module({module!r}), {function!r}, lambda *args: os.kill(os.getpid(), signal.SIGTERM))\n"
              f"sys.argv = ['trainkit', *{args!r}]\n"
              "cli.main()\n")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("command", "said"), [
    ("train", "interrupted: Stopped before training began; nothing was trained or kept."),
    ("check", "interrupted: Stopped."),
    ("compare", "interrupted: Stopped before training began; nothing was trained or kept."),  # was "Stopped.", as check's
])
def test_sigterm_before_any_run_takes_the_signals_stops_the_command_as_ctrl_c_does(tiny_recipe, command, said):
    # Loading the recipe and data, importing TensorFlow: SIGTERM's default killed the process
    # without a word (compare: without the table of the runs that had finished).
    proc = _sigterm_when_called("trainkit.cli", "_load", [command, str(tiny_recipe)])
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.strip() == said


def test_sigterm_in_a_command_outside_its_error_handling_exits_143_with_a_word(tmp_path):
    # typer turns any KeyboardInterrupt a command lets out into a silent exit 130: SIGTERM while
    # listing recipes (or printing a report) exited as a Ctrl-C, without a word.
    proc = _sigterm_when_called("trainkit.recipe", "list_recipes", ["recipes", str(tmp_path)])
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.strip() == "interrupted"


def test_ctrl_c_after_an_earlier_command_s_sigterm_in_the_same_process_still_exits_130(tmp_path, monkeypatch):
    # The SIGTERM flag was never cleared: once a command of the process had been terminated, a
    # later command's Ctrl-C exited 143 as a SIGTERM would.
    import signal

    import trainkit.cli as cli
    import trainkit.recipe as recipe
    from trainkit.interrupt import Terminated, restore_sigterm, sigterm_as_interrupt

    previous = sigterm_as_interrupt()
    try:
        with pytest.raises(Terminated):
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # an earlier command's SIGTERM
    finally:
        restore_sigterm(previous)

    def ctrl_c(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe, "list_recipes", ctrl_c)
    monkeypatch.setattr(sys, "argv", ["trainkit", "recipes", str(tmp_path)])
    assert cli._dispatch() == 130


def test_ctrl_c_in_a_command_outside_its_error_handling_exits_130_with_a_word(tmp_path, monkeypatch, capsys):
    # typer turns a KeyboardInterrupt a command lets out into exit code 130 without a word.
    import trainkit.cli as cli
    import trainkit.recipe as recipe

    def ctrl_c(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe, "list_recipes", ctrl_c)
    monkeypatch.setattr(sys, "argv", ["trainkit", "recipes", str(tmp_path)])
    assert cli._dispatch() == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_a_handled_ctrl_c_is_said_once(tiny_recipe, monkeypatch, capsys):
    # The command's own handling says what the stop means; the catch-all must not add a second line.
    import trainkit.cli as cli

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load", ctrl_c)
    monkeypatch.setattr(sys, "argv", ["trainkit", "check", str(tiny_recipe)])
    assert cli._dispatch() == 130
    assert capsys.readouterr().err.strip().splitlines() == ["interrupted: Stopped."]


def test_every_command_s_help_is_plain_text_and_says_what_it_does():
    # check's help showed the docstring's reStructuredText (``sweep:``, ``compare``), and diagnose's
    # said it read "a finished run" when it is as much for the runs that did not finish.
    from typer.testing import CliRunner

    runner = CliRunner()
    for command in ("train", "check", "diagnose", "recipes", "compare", "tensorboard"):
        result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0 and "``" not in result.output and ":func:" not in result.output, (command, result.output)
    diagnose = " ".join(runner.invoke(app, ["diagnose", "--help"], env={"COLUMNS": "100"}).output.split())
    assert "a finished run" not in diagnose and "did not finish" in diagnose


def test_train_and_diagnose_help_name_the_model_file_as_the_readme_does():
    # train's --help said it writes "TensorBoard logs and a report", diagnose's nothing of its
    # model: line, though a run leaves model.keras and the README's table names it.
    from typer.testing import CliRunner

    runner = CliRunner()
    train = " ".join(runner.invoke(app, ["train", "--help"], env={"COLUMNS": "100"}).output.split())
    diagnose = " ".join(runner.invoke(app, ["diagnose", "--help"], env={"COLUMNS": "100"}).output.split())
    assert "model.keras" in train and "keras.models.load_model" in train and "0 trained (also where the model could not be saved" in train
    assert "model.keras" in diagnose and "model_file" in diagnose
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `trainkit train "))
    assert "`model.keras`" in row and "model-unsaved" in row


def test_recipes_outside_the_repository_says_the_recipes_are_not_installed(runner, tmp_path, monkeypatch):
    # An installed trainkit run from another directory said only "No recipe directory at recipes":
    # the README's recipes are the repository's files, which pip does not install.
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["recipes"])
    assert result.exit_code == 2 and "recipes/ folder, which pip does not install" in result.output
    result = runner.invoke(app, ["recipes", "elsewhere"])  # a directory the user named: only its absence
    assert result.exit_code == 2 and "pip" not in result.output


def test_one_name_where_a_list_belongs_is_shown_as_a_list(runner, tiny_recipe, tmp_path):
    # `metrics: accuracy` (a name, not a list of one) said only "expected a valid list".
    written = tmp_path / "one_metric.yaml"
    written.write_text(TINY.replace("metrics: [accuracy]", "metrics: accuracy"))
    result = runner.invoke(app, ["check", str(written)])
    assert result.exit_code == 2 and result.output.strip() == (
        f"error: [recipe-invalid-value] {written}: Invalid value at metrics: received 'accuracy'; "
        "expected a valid list, such as ['accuracy']."), result.output
    result = runner.invoke(app, ["check", str(tiny_recipe), "--set", "allow=single-class"])
    assert result.exit_code == 2 and result.output.rstrip().endswith("expected a valid list, such as ['single-class']."), result.output
    result = runner.invoke(app, ["check", str(tiny_recipe), "--set", "model.layers={type: dense, units: 1}"])
    assert result.exit_code == 2 and "such as" not in result.output, result.output  # a mapping: no list of it to show


@pytest.mark.parametrize(("override", "shown"), [
    ("metrics=accuracy,auc", "such as ['accuracy', 'auc']."),
    ("sweep.optimizer.learning_rate=0.1,0.01", "of the values to try, such as [0.1, 0.01]."),
    ("metrics=accuracy,", "such as ['accuracy']."),  # a trailing comma's empty part showed None
])
def test_a_comma_separated_value_where_a_list_belongs_is_shown_as_its_items(runner, tiny_recipe, override, shown):
    # `--set metrics=accuracy,auc` (one YAML string) was told "such as ['accuracy,auc']": a list of
    # one name that is no metric, the same mistake written in brackets.
    result = runner.invoke(app, ["check", str(tiny_recipe), "--set", override])
    assert result.exit_code == 2 and result.output.rstrip().endswith(shown), result.output


def test_an_empty_value_where_a_list_belongs_is_not_shown_as_a_list_of_none(runner, tiny_recipe):
    # `--set allow=` (YAML's null) was told "expected a valid list, such as [None]".
    result = runner.invoke(app, ["check", str(tiny_recipe), "--set", "allow="])
    assert result.exit_code == 2 and "received None" in result.output and "[None]" not in result.output, result.output


def test_a_set_value_the_shell_cut_at_a_space_says_to_quote_it(runner, tiny_recipe):
    # Unquoted, `--set sweep.optimizer.learning_rate=[1.0, 1e-3]` reached trainkit as "...=[1.0,"
    # and a recipe "1e-3]": a YAML error "found '<stream end>'" (compare) or "unexpected extra
    # argument(s)" (train), neither of which said the quotes were missing.
    hint = "If the value holds spaces, the shell cut it at the first one: quote the whole override, "
    cut = runner.invoke(app, ["compare", str(tiny_recipe), "--set", "sweep.optimizer.learning_rate=[1.0,", "1e-3]"])
    assert cut.exit_code == 2 and cut.output.startswith("error: [bad-override]"), cut.output
    assert cut.output.rstrip().endswith(hint + "--set 'sweep.optimizer.learning_rate=[1.0, ...'."), cut.output
    # quoted, spaces and all, with a bracket left open: no shell to blame
    quoted = runner.invoke(app, ["train", str(tiny_recipe), "--set", "optimizer={name: sgd, momentum: 0.9"])
    assert quoted.exit_code == 2 and quoted.output.startswith("error: [bad-override]") and "shell" not in quoted.output, quoted.output
    # usage errors are written by the console script's main(), so through it
    for args, said in ([["--set", "optimizer={name:", "sgd,", "momentum:", "0.9}"], hint + "--set 'optimizer={name: ...'. See trainkit train --help."],
                       [["--set=optimizer={name:", "sgd,", "momentum:", "0.9}"], hint + "--set 'optimizer={name: ...'. See trainkit train --help."],
                       [["extra", "--set", "training.epochs=1"], "Got unexpected extra argument(s) (extra). See trainkit train --help."]):
        proc = subprocess.run([sys.executable, "-m", "trainkit.cli", "train", str(tiny_recipe), *args], capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 2 and proc.stderr.startswith("error: [usage] Got unexpected extra argument(s)"), proc.stderr
        assert proc.stderr.rstrip().endswith(said) and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_a_recipe_indented_with_tabs_says_so(runner, tiny_recipe, tmp_path):
    # An editor's tab indent said only "found character '\t' that cannot start any token".
    tabbed = tmp_path / "tabbed.yaml"
    tabbed.write_text(TINY.replace("training: {epochs: 2, batch_size: 32, jit_compile: false}", "training:\n\tepochs: 2"))
    result = runner.invoke(app, ["check", str(tabbed)])
    assert result.exit_code == 2 and result.output.startswith("error: [recipe-yaml]"), result.output
    assert result.output.rstrip().endswith("YAML indents with spaces, not tabs: replace the tabs with spaces."), result.output
    unclosed = runner.invoke(app, ["check", str(tiny_recipe), "--set", "training={epochs: 2"])  # another YAML error: no word of tabs
    assert unclosed.exit_code == 2 and "tabs" not in unclosed.output, unclosed.output


def test_a_readme_recipe_path_outside_the_repository_says_the_recipes_are_not_installed(runner, tmp_path, monkeypatch):
    # `trainkit train recipes/mlp_binary.yaml` from another directory (the Quick start after
    # `pip install .`) said only "Recipe file recipes/mlp_binary.yaml does not exist."
    monkeypatch.chdir(tmp_path)
    for command in ("train", "check", "compare"):
        result = runner.invoke(app, [command, "recipes/mlp_binary.yaml"])
        assert result.exit_code == 2 and result.output.startswith("error: [recipe-not-found]"), result.output
        assert "which pip does not install" in result.output and "recipes/mlp_binary.yaml)" in result.output, result.output
    (tmp_path / "recipes").mkdir()  # a recipes/ folder of the user's own: only the file's absence
    result = runner.invoke(app, ["train", "recipes/mlp_binary.yaml"])
    assert result.exit_code == 2 and "pip" not in result.output, result.output


def test_python_dash_m_trainkit_is_the_command_line():
    # "No module named trainkit.__main__": the command was reachable only as the installed script.
    proc = subprocess.run([sys.executable, "-m", "trainkit", "recipes", "no-such-dir"], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("error: [recipes-not-found]"), proc.stderr


def test_the_command_list_says_what_each_command_does_without_cutting_it_off():
    # `trainkit --help` cut every summary off mid-sentence: "Train a recipe: checks, training,
    # TensorBoard logs and a...".
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "80"})
    commands = result.output.split("Commands:", 1)[1].strip().splitlines()
    assert result.exit_code == 0 and len(commands) == 6, result.output
    assert all(line.rstrip().endswith(".") and not line.rstrip().endswith("...") for line in commands), commands


def test_a_builder_model_that_fails_only_while_training_is_one_line_naming_the_user_s_code(runner, tmp_path):
    # A layer whose call() fails with training=True passes the build on zeros and every check; the
    # first step then raised a RuntimeError traceback through TensorFlow and trainkit (exit 1).
    (tmp_path / "nets.py").write_text(
        "import keras\n"
        "class Fragile(keras.layers.Layer):\n"
        "    def call(self, x, training=None):\n"
        "        if training:\n"
        "            raise RuntimeError('only in training')\n"
        "        return x\n"
        "def build(input_shape):\n"
        "    return keras.Sequential([keras.Input(input_shape), Fragile(), keras.layers.Dense(1, activation='sigmoid')])\n")
    recipe = tmp_path / "fragile.yaml"
    recipe.write_text(TINY.replace("model:\n  layers:\n    - {type: dense, units: 4, activation: relu}\n    - {type: dense, units: 1, activation: sigmoid}\n",
                                   "model: {builder: 'nets:build'}\n"))
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(recipe), "--logdir", str(logdir), "-q"])
    assert result.exit_code == 2, result.output
    (run_dir,) = run_dirs(logdir)
    assert result.output.strip() == (f'error: [model-error] The model of builder "nets:build" failed while training at {tmp_path / "nets.py"}:5 (in call): '
                                     f"RuntimeError: only in training. The run's failed report is in {run_dir}.")
    assert json.loads((run_dir / "report.json").read_text())["status"] == "failed"


def test_a_report_that_cannot_be_written_at_the_end_is_one_line_and_a_resume_writes_it(runner, tiny_recipe, tmp_path, monkeypatch):
    # A full disk at the very end of a run (its checkpoints and events written): an OSError traceback.
    import trainkit.run

    real = trainkit.run.write_report

    monkeypatch.setattr(trainkit.run, "write_report", _disk_full)
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q"])
    assert result.exit_code == 2, result.output
    (run_dir,) = run_dirs(logdir)
    assert result.output.strip().startswith(f"error: [logdir-unwritable] The run trained, but writing its report to {run_dir} failed: No space left on device.")
    monkeypatch.setattr(trainkit.run, "write_report", real)
    again = runner.invoke(app, ["train", str(tiny_recipe), "--resume", str(run_dir), "-q"])
    assert again.exit_code == 0 and again.output.startswith("nothing left to train")
    assert json.loads((run_dir / "report.json").read_text())["status"] == "completed"


def test_an_interrupted_run_whose_report_cannot_be_written_still_says_how_to_resume(runner, tiny_recipe, tmp_path, monkeypatch):
    # Ctrl-C on a full disk: the report's OSError traceback replaced the interruption and its resume line.
    import trainkit.run
    from trainkit.errors import TrainingInterrupted
    from trainkit.trainer import Trainer

    def stopped(self, *args, **kwargs):
        raise TrainingInterrupted("interrupted", "Training stopped by SIGINT in epoch 1; a checkpoint was written.", exit_code=130)

    monkeypatch.setattr(Trainer, "fit", stopped)
    monkeypatch.setattr(trainkit.run, "write_report", _disk_full)
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 130, result.output
    warning, interrupted = result.stderr.strip().splitlines()
    assert warning.startswith("warning: [logdir-unwritable] The interrupted run's report could not be written") and warning.endswith("No space left on device.")
    assert interrupted.startswith("interrupted: Training stopped by SIGINT in epoch 1") and " --resume " in interrupted


def test_a_logdir_that_is_a_run_directory_is_refused_instead_of_nesting_a_run_in_it(runner, tiny_recipe, tmp_path):
    # `--logdir runs/tiny/<time>` (meant: --resume) put a new run inside the old one, as
    # runs/tiny/<time>/tiny/<time2>/, among its checkpoints and events.
    logdir = tmp_path / "runs"
    assert runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q"]).exit_code == 0
    (run_dir,) = run_dirs(logdir)
    before = sorted(p.name for p in run_dir.iterdir())
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(run_dir), "-q"])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: [logdir-is-run] The log directory {run_dir} is a run directory (it holds checkpoints/)")
    assert f"--resume {run_dir};" in result.output and sorted(p.name for p in run_dir.iterdir()) == before
    # compare and check, which have no --resume, were told to "use --resume": train's is named
    for command in (["compare", str(tiny_recipe), "--logdir", str(run_dir), "-q"],
                    ["check", str(tiny_recipe), "--set", f"logging.logdir={run_dir}"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and result.output.startswith("error: [logdir-is-run]"), result.output
        assert f"To continue that run use trainkit train RECIPE --resume {run_dir};" in result.output, result.output


def test_diagnose_of_a_log_directory_names_its_recipes_folders(runner, tiny_recipe, tmp_path):
    # `trainkit diagnose runs` (the logdir, one level too high) said it held no events of a run.
    logdir = tmp_path / "runs"
    assert runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q"]).exit_code == 0
    result = runner.invoke(app, ["diagnose", str(logdir)])
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: [run-not-found] {logdir} is a log directory, with the runs of 1 recipe: pass one recipe's folder "
                                     f"for its newest run ({logdir / 'tiny'}), or one run directory in it.")
    assert runner.invoke(app, ["diagnose", str(logdir / "tiny")]).exit_code == 0


def test_diagnose_of_a_path_inside_a_run_names_the_run(runner, tiny_recipe, tmp_path):
    # `trainkit diagnose runs/tiny/<time>/train` (its events' own folder) said it held "no
    # TensorBoard events of a trainkit run", and `.../report.json` that it was no run directory.
    logdir = tmp_path / "runs"
    assert runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q"]).exit_code == 0
    (run_dir,) = run_dirs(logdir)
    for inside in (run_dir / "train", run_dir / "report.json", run_dir / "model.keras", run_dir / "checkpoints" / "checkpoint"):
        result = runner.invoke(app, ["diagnose", str(inside)])
        assert result.exit_code == 2, result.output
        assert result.output.strip() == (f"error: [run-not-found] {inside} is inside the run directory {run_dir}: "
                                         f"pass that directory (trainkit diagnose {run_dir})."), result.output
    assert runner.invoke(app, ["diagnose", str(run_dir)]).exit_code == 0


def test_a_logdir_whose_path_is_not_utf8_is_refused_before_training(runner, tiny_recipe, tmp_path):
    # A Latin-1 directory name (b"l\xe9"): TensorFlow's event writer failed on it with a
    # UnicodeEncodeError traceback, and every attempt left a run directory behind.
    logdir = tmp_path / os.fsdecode(b"runs-l\xe9")
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: [logdir-unwritable] Cannot write to the log directory ") and "is not UTF-8 text" in result.output
    assert not logdir.exists()


@pytest.mark.parametrize(("args", "said"), [
    (["train", "RECIPE", "--logdir", ""], "The value of --logdir is empty"),
    (["train", "RECIPE", "--logdir="], "The value of --logdir is empty"),
    (["check", ""], "An argument is empty"),
    (["check", "RECIPE", "--set", ""], "The value of --set is empty"),
])
def test_an_empty_argument_is_a_usage_error_not_the_current_directory(tiny_recipe, tmp_path, args, said):
    # `--logdir "$LOGDIR"` with LOGDIR unset: click read "" as ".", and the run went into the
    # current directory (check "" said the recipe path "." is a directory).
    args = [str(tiny_recipe) if a == "RECIPE" else a for a in args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # run from tmp_path, the package is this checkout's
    proc = subprocess.run([sys.executable, "-m", "trainkit.cli", *args], capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: [usage] {said} (a shell variable that was not set?)") and len(proc.stderr.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]
    # An override is no path: "an empty path would be taken for the current directory" misled.
    assert ("empty path" in proc.stderr) != ("--set" in args) and ("e.g. --set training.epochs=5" in proc.stderr) == ("--set" in args)


@pytest.mark.parametrize("args", [["--set=training.early_stopping="], ["--set", "training.early_stopping="]])
def test_an_override_to_null_written_with_an_equals_sign_is_not_an_empty_argument(args):
    # --set=training.early_stopping= (null: no early stopping) was refused as an empty --set.
    from trainkit.cli import _empty_argument

    assert _empty_argument(["train", "r.yaml", *args]) is None
    assert _empty_argument(["train", "r.yaml", "--set="]) == "The value of --set"


def test_the_report_holds_what_the_recipe_standardised_with(runner, tmp_path):
    # A recipe with standardize_targets trained a model that predicts standardised values, and
    # nothing recorded the means and deviations to standardise new inputs or undo the targets'.
    recipe = tmp_path / "reg.yaml"
    recipe.write_text(TINY.replace("task: binary", "task: regression")
                      .replace("learnable_binary", "learnable_regression")
                      .replace("{standardize_inputs: true}", "{standardize_inputs: true, standardize_targets: true}")
                      .replace("activation: sigmoid}", "activation: linear}")
                      .replace("loss: binary_crossentropy", "loss: mse").replace("metrics: [accuracy]", "metrics: [mae]"))
    result = runner.invoke(app, ["train", str(recipe), "--logdir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    (run_dir,) = run_dirs(tmp_path / "runs")
    scaling = json.loads((run_dir / "report.json").read_text())["standardization"]

    from trainkit.data import prepare_data
    from trainkit.recipe import load_recipe

    splits = prepare_data(load_recipe(recipe))
    for name, fitted in (("inputs", splits.input_standardizer), ("targets", splits.target_standardizer)):
        np.testing.assert_allclose(scaling[name]["mean"], fitted.mean, rtol=1e-6)
        np.testing.assert_allclose(scaling[name]["std"], fitted.std, rtol=1e-6)
    assert len(scaling["inputs"]["mean"]) == 4 and scaling["targets"]["std"] != [1.0]
    (tmp_path / "plain.yaml").write_text(TINY.replace("preprocessing: {standardize_inputs: true}\n", ""))
    plain = runner.invoke(app, ["train", str(tmp_path / "plain.yaml"), "--logdir", str(tmp_path / "plain"), "-q"])
    assert plain.exit_code == 0, plain.output
    (plain_dir,) = run_dirs(tmp_path / "plain")
    assert json.loads((plain_dir / "report.json").read_text())["standardization"] is None


@pytest.mark.parametrize(("logdir", "code"), [("a_file", "logdir-unwritable"), ("runs/tiny/20250101-120000", "logdir-is-run")])
def test_check_refuses_a_logdir_that_train_refuses(runner, tiny_recipe, tmp_path, logdir, code):
    # check said "ok" for a recipe whose logging.logdir train refuses before training.
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "runs" / "tiny" / "20250101-120000" / "checkpoints").mkdir(parents=True)
    overrides = ["--set", f"logging.logdir={tmp_path / logdir}"]
    for command in ("train", "check"):
        result = runner.invoke(app, [command, str(tiny_recipe), *overrides])
        assert result.exit_code == 2 and f"error: [{code}]" in result.output, (command, result.output)
        if code == "logdir-unwritable":
            # It sent check's user to a --logdir option that check does not have.
            assert "--logdir on the command line" not in result.output and "logging.logdir" in result.output


def test_a_builder_op_that_fails_when_it_runs_is_one_line_naming_the_user_s_code(runner, tmp_path):
    # A TensorFlow op of the user's layer that fails only when it runs (an assertion, a shape only
    # the last batch has) raised from trainkit's loop: its traceback named no line of the user's
    # code, so it was a traceback (exit 1) instead of one model-error line.
    (tmp_path / "opnets.py").write_text(
        "import keras\n"
        "import tensorflow as tf\n"
        "class Checked(keras.layers.Layer):\n"
        "    def call(self, x, training=None):\n"
        "        if training:\n"
        "            tf.debugging.assert_less(tf.reduce_max(x), -1e9, message='x too large')\n"
        "        return x\n"
        "def build(input_shape):\n"
        "    return keras.Sequential([keras.Input(input_shape), Checked(), keras.layers.Dense(1, activation='sigmoid')])\n")
    recipe = tmp_path / "checked.yaml"
    recipe.write_text(TINY.replace("model:\n  layers:\n    - {type: dense, units: 4, activation: relu}\n    - {type: dense, units: 1, activation: sigmoid}\n",
                                   "model: {builder: 'opnets:build'}\n"))
    result = runner.invoke(app, ["train", str(recipe), "--logdir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert line.startswith(f'error: [model-error] The model of builder "opnets:build" failed while training at {tmp_path / "opnets.py"}:6 (in call): '
                           "InvalidArgumentError: assertion failed: [x too large]") and "\n" not in line, line


@pytest.mark.parametrize("module", ["trainkit.diagnosis", "trainkit.diagnosis.masked_positions", "trainkit.checks"])
def test_each_package_imports_first(module):
    """``import trainkit.diagnosis`` first in a process: a cycle through trainkit.checks failed it
    with an ImportError, and ``trainkit diagnose`` with a traceback."""
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_diagnose_of_a_missing_run_is_a_usage_error_in_a_fresh_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "trainkit.cli", "diagnose", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "error: [run-not-found]" in proc.stderr + proc.stdout


def test_a_loss_argument_that_fails_on_the_model_outputs_is_a_user_error(runner, tiny_recipe, tmp_path):
    # `--set loss.axis=5` passed `check` as "ok"; `train` then failed tracing its first step with
    # a TensorFlow traceback (exit 1) and left its run directory behind.
    checked = runner.invoke(app, ["check", str(tiny_recipe), "--set", "loss.axis=5"])
    said = 'error: [bad-loss-argument] Loss "binary_crossentropy" fails with axis: 5 on this model\'s outputs'
    assert checked.exit_code == 2 and checked.output.startswith(said) and len(checked.output.splitlines()) == 1, checked.output
    runs = tmp_path / "runs"
    trained = runner.invoke(app, ["train", str(tiny_recipe), "--set", "loss.axis=5", "--logdir", str(runs), "-q"])
    assert trained.exit_code == 2 and said in trained.output, trained.output
    assert not runs.exists() or not any(runs.iterdir())
    fine = runner.invoke(app, ["check", str(tiny_recipe), "--set", "loss.axis=-1"])  # its default, written out
    assert fine.exit_code == 0 and fine.output.rstrip().endswith("ok: no compatibility or data problems found"), fine.output


def test_a_loss_reduction_of_none_is_a_user_error_before_training(runner, tiny_recipe, tmp_path):
    # `loss: {name: ..., reduction: none}` passed `check` as "ok"; `train` made its run directory
    # and its first step then refused the loss of one value a row (loss-not-scalar).
    override = "loss={name: binary_crossentropy, reduction: none}"
    checked = runner.invoke(app, ["check", str(tiny_recipe), "--set", override])
    said = "error: [bad-loss-argument] Loss \"binary_crossentropy\" with reduction: 'none' returns one value a row"
    assert checked.exit_code == 2 and checked.output.startswith(said) and "sum_over_batch_size" in checked.output, checked.output
    runs = tmp_path / "runs"
    trained = runner.invoke(app, ["train", str(tiny_recipe), "--set", override, "--logdir", str(runs), "-q"])
    assert trained.exit_code == 2 and said in trained.output, trained.output
    assert not runs.exists() or not any(runs.iterdir())
    summed = runner.invoke(app, ["check", str(tiny_recipe), "--set", "loss={name: binary_crossentropy, reduction: sum}"])
    assert summed.exit_code == 0, summed.output


def test_a_recipe_s_shuffled_rows_into_a_stateful_rnn_are_told(runner, tmp_path):
    # A recipe run's data checks were not given training.shuffle: a builder's stateful LSTM under
    # the default shuffle: true passed `trainkit check` as "ok", though the advice names that key.
    (tmp_path / "stnets.py").write_text(
        "import keras\n"
        "def build(input_shape):\n"
        "    return keras.Sequential([keras.Input(batch_shape=(8, *input_shape)), keras.layers.LSTM(4, stateful=True, name='carried'), keras.layers.Dense(1)])\n")
    x = np.random.default_rng(0).normal(size=(40, 5, 3)).astype("float32")
    np.savez(tmp_path / "seq.npz", x=x, y=x.sum(axis=(1, 2)) * np.float32(0.1))
    recipe = tmp_path / "stateful.yaml"
    recipe.write_text("name: stateful\ntask: regression\ndata: {source: npz, path: seq.npz}\nmodel: {builder: 'stnets:build'}\n"
                      "loss: mse\noptimizer: sgd\ntraining: {epochs: 1, batch_size: 8, jit_compile: false}\n")
    result = runner.invoke(app, ["check", str(recipe)])
    assert result.exit_code == 0 and "[stateful-shuffled]: 'carried' is stateful" in result.output, result.output
    result = runner.invoke(app, ["check", str(recipe), "--set", "training.shuffle=false"])
    assert result.exit_code == 0 and "stateful-shuffled" not in result.output, result.output


def test_a_run_leaves_its_trained_model_as_a_file_keras_loads(tiny_recipe, tmp_path):
    # A run wrote checkpoints/ only, which load_weights and load_model refuse: a model trained from
    # the command line reached plain Keras only by building it again from the recipe.
    import keras

    from trainkit.data import prepare_data
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    recipe = load_recipe(tiny_recipe)
    result = train_recipe(recipe, logdir=tmp_path, verbose=0)
    assert result.model_file == result.run_dir / "model.keras"
    model = keras.models.load_model(result.model_file)
    splits = prepare_data(recipe)  # standardised as the run's were: the file predicts from them
    assert np.array_equal(model.predict(splits.x_val, verbose=0), result.trainer.predict(splits.x_val))
    # Compiled with the run's loss, metrics and optimizer: evaluate says what the report says.
    final = json.loads((result.run_dir / "report.json").read_text())["final"]
    assert model.evaluate(splits.x_val, splits.y_val, return_dict=True, verbose=0) == {"loss": final["val_loss"], "accuracy": final["val_accuracy"]}
    assert int(model.optimizer.iterations.numpy()) == int(result.trainer.optimizer.iterations.numpy()) == 6
    assert not list(result.run_dir.glob(".model.keras*"))  # no temporary file left behind


def test_a_run_early_stopping_restored_saves_the_restored_model(runner, tiny_recipe, tmp_path):
    import keras

    from trainkit.data import prepare_data
    from trainkit.recipe import load_recipe

    logdir = tmp_path / "runs"
    args = ["--set", "training.epochs=30", "--set", "optimizer.learning_rate=0.5", "--set", "training.early_stopping={patience: 1}"]
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q", *args])
    assert result.exit_code == 0, result.output
    (run_dir,) = run_dirs(logdir)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["status"] == "stopped" and report["restored"]["epoch"] < report["epochs_run"]
    splits = prepare_data(load_recipe(tiny_recipe, [a for a in args if a != "--set"]))
    measured = keras.models.load_model(run_dir / "model.keras").evaluate(splits.x_val, splits.y_val, return_dict=True, verbose=0)
    assert measured["loss"] == report["restored"]["val_loss"] != report["final"]["val_loss"]


@pytest.mark.parametrize(("layer", "says"), [
    ("class Doubled(keras.layers.Layer):\n    def call(self, x):\n        return x * 2\ndef make():\n    return Doubled(name='doubled')\n",
     "layer doubled (Doubled: not registered with Keras, so load_model cannot find the class)"),
    ("class Doubled(keras.layers.Layer):\n    def __init__(self, fn, **kwargs):\n        super().__init__(**kwargs)\n"
     "        self.fn = fn\n    def call(self, x):\n        return self.fn(x)\ndef make():\n    return Doubled(lambda x: x * 2, name='doubled')\n",
     "layer doubled (Doubled: its get_config() fails, an __init__ argument it cannot serialise)"),
])
def test_a_builder_layer_keras_cannot_save_is_a_warning_not_a_failed_run(runner, tmp_path, layer, says):
    name = f"unsaved_{len(layer)}"  # a module of its own per case (imported modules are cached)
    (tmp_path / f"{name}.py").write_text(f"import keras\n{layer}def build(input_shape):\n"
                                         "    return keras.Sequential([keras.Input(input_shape), make(), keras.layers.Dense(1, activation='sigmoid')])\n")
    recipe = tmp_path / "custom.yaml"
    recipe.write_text(TINY.replace("model:\n  layers:\n    - {type: dense, units: 4, activation: relu}\n    - {type: dense, units: 1, activation: sigmoid}\n",
                                   f"model: {{builder: '{name}:build'}}\n"))
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(recipe), "--logdir", str(logdir), "-q"])
    assert result.exit_code == 0, result.output
    (run_dir,) = run_dirs(logdir)
    assert f"warning: [model-unsaved] The trained model was not written to {run_dir / 'model.keras'}: {says}. Register each layer class" in result.output
    assert "register_keras_serializable" in result.output and "checkpoints/ with tf.train.Checkpoint" in result.output
    assert json.loads((run_dir / "report.json").read_text())["status"] == "completed"
    assert sorted(p.name for p in run_dir.glob("*model*")) == []  # neither the file nor a temporary one


def test_a_model_file_the_disk_cannot_take_is_logdir_unwritable_and_a_resume_writes_it(runner, tiny_recipe, tmp_path, monkeypatch):
    import keras

    real = keras.Model.save

    monkeypatch.setattr(keras.Model, "save", _disk_full)
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q"])
    (run_dir,) = run_dirs(logdir)
    assert result.exit_code == 2 and result.output.startswith(f"error: [logdir-unwritable] The run trained, but writing its model file to "
                                                              f"{run_dir / 'model.keras'} failed: No space left on device."), result.output
    assert not list(run_dir.glob("*model*"))
    monkeypatch.setattr(keras.Model, "save", real)
    resumed = runner.invoke(app, ["train", str(tiny_recipe), "-q", "--resume", str(run_dir)])
    assert resumed.exit_code == 0 and resumed.output.startswith("nothing left to train"), resumed.output
    assert keras.models.load_model(run_dir / "model.keras").optimizer.iterations.numpy() == 6


@pytest.mark.parametrize(("failing", "says"), [("mkstemp", "Permission denied"), ("fsync", "No space left on device")])
def test_a_model_file_whose_temporary_file_the_disk_refuses_is_logdir_unwritable(runner, tiny_recipe, tmp_path, monkeypatch, failing, says):
    # The temporary file's own writes (mkstemp in a run directory made read-only, its fsync on a
    # full disk) were told 'warning: [model-unsaved] ... PermissionError: ... Register each layer
    # class of your own ...', exit 0 where the report could be written: the disk's, not a layer's.
    import tempfile

    import trainkit.runs

    real_mkstemp, real_fsync = tempfile.mkstemp, os.fsync

    def mkstemp(*args, **kwargs):
        if kwargs.get("prefix", "").startswith(".model.keras"):
            raise PermissionError(errno.EACCES, "Permission denied", str(kwargs.get("dir")))
        return real_mkstemp(*args, **kwargs)

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".keras"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    if failing == "mkstemp":
        monkeypatch.setattr(trainkit.runs.tempfile, "mkstemp", mkstemp)
    else:
        monkeypatch.setattr(trainkit.runs.os, "fsync", fsync)
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q"])
    (run_dir,) = run_dirs(logdir)
    assert result.exit_code == 2 and result.output.startswith(f"error: [logdir-unwritable] The run trained, but writing its model file to "
                                                              f"{run_dir / 'model.keras'} failed: {says}"), result.output
    assert "model-unsaved" not in result.output and not list(run_dir.glob("*model*"))


def test_the_readme_s_standardisation_snippet_runs_for_inputs_only_and_for_targets_too(tmp_path):
    # The README's lines read s["targets"] unconditionally: for a classifier whose recipe
    # standardised its inputs only (mlp_binary), report.json's standardization holds "inputs" alone
    # and the lines failed with KeyError: 'targets'.
    import keras

    from trainkit.data import prepare_data
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### The trained model (model.keras)\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    snippet = re.findall(r"```python\n(.*?)```", section, re.S)[-1]
    assert "standardization" in snippet
    for name, sets in (("mlp_binary", ["training.epochs=1", "data.rows=100"]), ("high_early_stop_fixed", ["training.epochs=1", "data.rows=100"])):
        path = REPO / "recipes" / f"{name}.yaml"
        result = train_recipe(load_recipe(path, sets), logdir=tmp_path, verbose=0)
        raw = prepare_data(load_recipe(path, [*sets, "preprocessing={standardize_inputs: false, standardize_targets: false}"]))
        scope = {"run_dir": result.run_dir, "model": keras.models.load_model(result.model_file), "x": raw.x_val}
        exec(snippet, scope)  # the README's own lines
        s = json.loads((result.run_dir / "report.json").read_text())["standardization"]
        expected = result.trainer.predict(prepare_data(load_recipe(path, sets)).x_val)
        if "targets" in s:
            expected = expected * s["targets"]["std"][0] + s["targets"]["mean"][0]
        assert np.abs(scope["y"] - expected).max() < 1e-5 * max(1.0, np.abs(expected).max()), name


def test_the_readme_s_standardisation_lines_run_as_written_where_the_run_standardised_nothing(tiny_recipe, tmp_path):
    # A run that standardised nothing (standardization null): the README's lines raised TypeError
    # (the inputs-only and targets cases: the test above).
    import keras

    from trainkit.data import prepare_data
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    sets = ["preprocessing.standardize_inputs=false"]
    result = train_recipe(load_recipe(tiny_recipe, sets), logdir=tmp_path, verbose=0)
    run_dir, model = result.run_dir, keras.models.load_model(result.model_file)
    x = prepare_data(load_recipe(tiny_recipe, ["preprocessing.standardize_inputs=false"])).x_val  # raw inputs
    section = (REPO / "README.md").read_text(encoding="utf-8").split("\n### The trained model (model.keras)\n", 1)[1].split("\n### ", 1)[0]
    lines = re.findall(r"```python\n(.*?)```", section, re.S)[-1]
    scope = {"json": json, "np": np, "run_dir": run_dir, "model": model, "x": x}
    exec(lines, scope)
    expected = result.trainer.predict(prepare_data(load_recipe(tiny_recipe, sets)).x_val)
    assert np.abs(scope["y"] - expected).max() < 1e-6
    assert json.loads((run_dir / "report.json").read_text())["standardization"] is None


def test_a_second_ctrl_c_while_the_model_file_is_written_says_how_to_resume_and_a_resume_writes_it(runner, tiny_recipe, tmp_path, monkeypatch):
    # Writing model.keras takes seconds for a big model (5 s for 8M parameters): a second Ctrl-C
    # then was told "Stopped before training began; nothing was trained or kept.", of a run that
    # trained and kept its checkpoints, with no resume line.
    import signal

    import keras

    import trainkit.model_file

    load_back = trainkit.model_file._load_back

    def interrupted_twice(path):
        os.kill(os.getpid(), signal.SIGINT)  # waits for the run's end, as the README says
        os.kill(os.getpid(), signal.SIGINT)  # the second: SecondInterrupt

    monkeypatch.setattr(trainkit.model_file, "_load_back", interrupted_twice)
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q"])
    (run_dir,) = run_dirs(logdir)
    assert result.exit_code == 130, result.output
    assert "nothing was trained" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(f"Resume with: trainkit train {tiny_recipe} --resume {run_dir}"), result.stderr
    assert not [p.name for p in run_dir.iterdir() if "model.keras" in p.name]  # no temporary file, no half one
    monkeypatch.setattr(trainkit.model_file, "_load_back", load_back)
    resumed = runner.invoke(app, ["train", str(tiny_recipe), "--resume", str(run_dir), "-q"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run_dir / "report.json").read_text())["status"] == "completed"
    assert keras.models.load_model(run_dir / "model.keras").optimizer.iterations.numpy() == 6  # nothing trained again


def test_diagnose_names_the_run_s_model_file_or_says_why_a_finished_run_has_none(runner, tiny_recipe, tmp_path):
    logdir = tmp_path / "runs"
    assert runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q"]).exit_code == 0
    (run_dir,) = run_dirs(logdir)
    said = runner.invoke(app, ["diagnose", str(run_dir)])
    assert said.exit_code == 0 and said.output.splitlines()[1] == (
        f"model: {run_dir / 'model.keras'} (keras.models.load_model; compiled with the run's loss, metrics and optimizer)"), said.output
    assert json.loads(runner.invoke(app, ["diagnose", str(run_dir), "--json"]).output)["model_file"] == str(run_dir / "model.keras")
    (run_dir / "model.keras").unlink()  # Keras could not save it (model-unsaved), or a run older than the file
    said = runner.invoke(app, ["diagnose", str(run_dir)])
    assert said.output.splitlines()[1].startswith(f"model: no model.keras (Keras could not save the model, which the run said in a warning: "
                                                  f"[model-unsaved] line, or the run is older than the file): resume it (trainkit train RECIPE --resume {run_dir}; ")
    # A resume of a model Keras could not save says the same warning again: its classes first.
    assert "to write it, after registering the layer classes that warning named" in said.output.splitlines()[1]
    assert json.loads(runner.invoke(app, ["diagnose", str(run_dir), "--json"]).output)["model_file"] is None
    assert runner.invoke(app, ["train", str(tiny_recipe), "-q", "--resume", str(run_dir)]).exit_code == 0
    assert (run_dir / "model.keras").is_file()  # as the line says
    report = json.loads((run_dir / "report.json").read_text())
    (run_dir / "model.keras").unlink()
    (run_dir / "report.json").write_text(json.dumps({**report, "status": "interrupted", "epochs_run": 1}))
    assert "model:" not in runner.invoke(app, ["diagnose", str(run_dir)]).output  # the unfinished line speaks of it


def test_the_model_file_s_fit_goes_on_as_the_run_would_and_a_failed_resume_removes_it(tiny_recipe, tmp_path):
    import keras

    from trainkit.callbacks import Callback
    from trainkit.data import prepare_data
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    two, three = load_recipe(tiny_recipe, ["training.shuffle=false"]), load_recipe(tiny_recipe, ["training.shuffle=false", "training.epochs=3"])
    first, longer = train_recipe(two, logdir=tmp_path / "a", verbose=0), train_recipe(three, logdir=tmp_path / "b", verbose=0)
    splits = prepare_data(two)
    model = keras.models.load_model(first.model_file)  # the optimizer's state too: Adam's moments at step 6
    fitted = model.fit(splits.x_train, splits.y_train, epochs=1, batch_size=32, shuffle=False, verbose=0)
    assert fitted.history["loss"] == [longer.history.history["loss"][-1]]
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), longer.trainer.model.get_weights(), strict=True))

    class Failing(Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("failing")

    # A resume that trains on and fails: the file of the run's earlier end is not its model any more.
    with pytest.raises(RuntimeError, match="failing"):
        train_recipe(three, verbose=0, resume=first.run_dir, callbacks=[Failing()])
    assert json.loads((first.run_dir / "report.json").read_text())["status"] == "failed" and not first.model_file.exists()


def test_a_later_trainer_of_a_recipe_run_s_model_is_not_told_of_trainkit_s_own_compile(tiny_recipe, tmp_path):
    import keras

    from trainkit import Trainer
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    result = train_recipe(load_recipe(tiny_recipe), logdir=tmp_path, verbose=0)
    model = result.trainer.model
    assert model.compiled  # as trained, for its model.keras (README)

    def ignored(**given):
        trainer = Trainer(model, loss="binary_crossentropy", task="binary", jit_compile=False, diagnose=False, **given)
        return [f.message for f in trainer.findings if f.code == "compile-ignored"]

    # Fine-tuning the run's model at another rate, with other metrics, was told compile-ignored
    # ("drop the model.compile call") of the compile trainkit made, which the user never called.
    assert ignored(optimizer=keras.optimizers.Adam(1e-4), metrics=["auc"]) == []
    model.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"])  # the user's own compile
    (said,) = ignored(optimizer=keras.optimizers.Adam(1e-4), metrics=["accuracy"])
    assert "optimizer SGD (trainkit uses Adam)" in said, said


def test_a_trainer_of_the_loaded_model_file_is_told_of_its_compile_as_one_that_came_with_it(tiny_recipe, tmp_path):
    # keras.models.load_model(run_dir/"model.keras") restores the run's compile; a Trainer of it at
    # another setup was told to "drop the model.compile call", a call the user never wrote.
    import keras

    from trainkit import Trainer
    from trainkit.data import prepare_data
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    recipe = load_recipe(tiny_recipe)
    result = train_recipe(recipe, logdir=tmp_path, verbose=0)

    def ignored(model, **given):
        trainer = Trainer(model, loss="binary_crossentropy", task="binary", jit_compile=False, diagnose=False, **given)
        return trainer, [f for f in trainer.findings if f.code == "compile-ignored"]

    model = keras.models.load_model(result.model_file)
    # The file's own setup (the recipe's Adam(0.01), or the compiled optimizer itself): nothing to say.
    assert ignored(model, optimizer=keras.optimizers.Adam(0.01), metrics=["accuracy"])[1] == []
    trainer, found = ignored(model, optimizer=model.optimizer, metrics=["accuracy"])
    assert found == []
    (said,) = ignored(model, optimizer="adam", metrics=["accuracy"])[1]
    assert said.message.startswith("The model comes compiled, with an optimizer that has taken 6 steps (the compile "
                                   "keras.models.load_model restores with a saved model"), said.message
    assert "optimizer Adam(learning_rate=0.01) (trainkit uses Adam(learning_rate=0.001))" in said.message
    assert "drop" not in said.advice and "optimizer=model.optimizer goes on with the compiled optimizer" in said.advice
    assert said.evidence["optimizer_steps"] == 6
    # Given the compiled loss and optimizer, the Trainer goes on as model.fit goes on from the file.
    splits = prepare_data(recipe)
    fitted = keras.models.load_model(result.model_file).fit(splits.x_train, splits.y_train, epochs=2, batch_size=32, shuffle=False, verbose=0)
    history = trainer.fit(splits.x_train, splits.y_train, epochs=2, batch_size=32, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], fitted.history["loss"], atol=1e-5)
    # The user's own compile of it since (a fresh optimizer) is still told to be dropped.
    model.compile(loss="binary_crossentropy", optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"])
    (said,) = ignored(model, optimizer="adam", metrics=["accuracy"])[1]
    assert "optimizer SGD (trainkit uses Adam)" in said.message and "drop the model.compile call" in said.advice


def test_a_model_file_that_does_not_read_back_for_memory_is_no_full_disk(runner, tiny_recipe, tmp_path, monkeypatch):
    # The file is read back to be sure Keras can load it; a second copy of the model failing for
    # memory (ResourceExhaustedError, which trainkit reads as a storage error when writing) ended a
    # trained run with error: [logdir-unwritable] and exit 2.
    import keras
    import tensorflow as tf

    def out_of_memory(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    monkeypatch.setattr(keras.models, "load_model", out_of_memory)
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q"])
    assert result.exit_code == 0, result.output
    (run_dir,) = run_dirs(logdir)
    assert f"warning: [model-unsaved] The trained model was not written to {run_dir / 'model.keras'}: ResourceExhaustedError: OOM" in result.output
    assert not list(run_dir.glob("*model*")) and json.loads((run_dir / "report.json").read_text())["status"] == "completed"
    # No layer of the user's is at fault: the advice was to register layer classes the model does not have.
    assert "register_keras_serializable" not in result.output
    assert (f"Resume the run (trainkit train RECIPE --resume {run_dir}; nothing is trained again) to write it, or read the weights "
            "from the run's checkpoints/ with tf.train.Checkpoint (README: Python).") in result.output, result.output


def test_a_model_keras_cannot_compile_as_trained_is_written_uncompiled_with_a_warning(runner, tiny_recipe, tmp_path, monkeypatch):
    # It said "[model-unsaved]" of a file it then wrote, and said it before the save had succeeded.
    import keras

    def refused(self, *args, **kwargs):
        raise ValueError("refused")

    monkeypatch.setattr(keras.Model, "compile", refused)
    logdir = tmp_path / "runs"
    result = runner.invoke(app, ["train", str(tiny_recipe), "--logdir", str(logdir), "-q"])
    assert result.exit_code == 0, result.output
    (run_dir,) = run_dirs(logdir)
    assert (f"warning: [model-uncompiled] {run_dir / 'model.keras'} is written without the run's loss, metrics and optimizer: "
            "compiling the model with them failed (ValueError: refused); compile it after load_model.") in result.output
    assert "model-unsaved" not in result.output and not keras.models.load_model(run_dir / "model.keras").compiled
