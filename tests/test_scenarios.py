"""Every recipe in recipes/ trained in-process: broken ones show their codes, fixed ones stay clean.

The table is the contract of the README's scenario table: a broken recipe must yield each of its
expected codes (recall), a fixed or healthy recipe no finding of severity warning or error (false
alarms). Broken recipes are shortened with --set-style overrides to the epochs their finding needs;
fixed recipes run long enough to converge, because a clean run cut short is, correctly, undertrained.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainkit.cli import app
from trainkit.diagnosis.readback import diagnose_run_dir
from trainkit.recipe import load_recipe
from trainkit.run import RunResult, prepare_run, train_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
FAST = ["training.jit_compile=false"]

#: Broken recipe -> (overrides, codes it must yield).
BROKEN: dict[str, tuple[list[str], set[str]]] = {
    "low_batch_max": (["training.epochs=12"], {"loss-at-chance"}),
    "low_mse_binary_broken": (["training.epochs=3"], {"regression-loss-for-classification"}),
    "low_last_batch": ([], {"loss-at-chance"}),
    "high_unscaled_broken": (["training.epochs=2"], {"unscaled-inputs", "unscaled-targets", "initial-loss-too-high"}),
    "high_overfit_broken": (["training.epochs=50"], {"overfitting"}),
    "high_early_stop_broken": (["training.epochs=40"], {"overfitting"}),
    "zero_linear_logits": ([], {"loss-at-chance"}),
    "zero_tanh_saturated": (["training.epochs=70"], {"saturated-activations", "loss-at-chance"}),
    "zero_lr_1": (["training.epochs=30"], {"lr-too-high", "loss-at-chance"}),
    "zero_leak_broken": (["training.epochs=3"], {"label-leakage", "loss-collapsed"}),
    "train_scale_broken": (["training.epochs=2"], {"unscaled-inputs", "initial-loss-too-high"}),
    # Adam at 1.0 makes the run chaotic: how its loss swings late in the run depends on the CPU's
    # floating-point kernels (AVX-512 and AVX2 machines end it differently), so oscillating-loss,
    # found on some, is not required.
    "train_lr_high_broken": ([], {"lr-too-high", "dead-relu"}),
    "train_lr_low_broken": ([], {"lr-too-low", "underfitting"}),
    "train_complex_broken": (["training.epochs=40"], {"overfitting"}),
    "mlp_no_norm_broken": (["training.epochs=10"], {"loss-at-chance"}),
}
#: Fixed variants and healthy models (real data included) -> overrides; none may warn.
CLEAN: dict[str, list[str]] = {
    "low_mse_binary_fixed": [],
    "high_unscaled_fixed": ["training.epochs=30"],
    "high_overfit_fixed": ["training.epochs=60"],
    "high_early_stop_fixed": [],
    "train_scale_fixed": [],
    "train_lr_fixed": [],
    "train_simple_fixed": [],
    "mlp_binary": ["training.epochs=40"],
    "mlp_dropout_fixed": ["training.epochs=60"],
    "sklearn_breast_cancer": [],
    "sklearn_digits": [],
    "sklearn_diabetes": [],
}


def train(name: str, overrides: list[str], logdir: Path) -> RunResult:
    recipe = load_recipe(RECIPES / f"{name}.yaml", [*FAST, *overrides])
    prepared = prepare_run(recipe)
    # Periodic checkpoints (every 30 s by default) are not what is tested here, and a slow run
    # would write one; the final one is still written.
    if hasattr(prepared.trainer, "checkpoint_every"):
        prepared.trainer.checkpoint_every = 0
    return train_recipe(recipe, logdir=logdir, verbose=0, prepared=prepared)


def test_every_recipe_is_in_the_table():
    on_disk = {p.stem for p in RECIPES.glob("*.yaml")}
    assert on_disk == set(BROKEN) | set(CLEAN)
    assert not set(BROKEN) & set(CLEAN)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_recipe_yields_its_codes(name, tmp_path):
    overrides, expected = BROKEN[name]
    result = train(name, overrides, tmp_path)
    found = {f.code for f in result.findings}
    assert expected <= found, f"{name}: missing {sorted(expected - found)}; found {sorted(found)}"
    # Each finding carries evidence and concrete advice.
    for f in result.findings:
        if f.code in expected:
            assert f.advice and f.message


@pytest.mark.parametrize("name", sorted(CLEAN))
def test_fixed_and_healthy_recipes_yield_no_warning_or_error(name, tmp_path):
    result = train(name, CLEAN[name], tmp_path)
    alarms = [f"{f.severity} {f.code}: {f.message}" for f in result.findings if f.severity in ("warning", "error")]
    assert not alarms, f"{name}: {alarms}"


def test_readback_from_tensorboard_equals_the_live_findings(tmp_path):
    result = train("zero_lr_1", ["training.epochs=30"], tmp_path)
    live = [f.to_dict() for f in result.findings]
    assert {"lr-too-high", "loss-at-chance"} <= {f["code"] for f in live}
    assert [f.to_dict() for f in diagnose_run_dir(result.run_dir)] == live
    report = json.loads((result.run_dir / "report.json").read_text())
    assert [f["code"] for f in report["findings"]] == [f["code"] for f in live]
    out = CliRunner().invoke(app, ["diagnose", str(result.run_dir), "--json"])
    assert out.exit_code == 0, out.output
    assert [f["code"] for f in json.loads(out.output)["findings"]] == [f["code"] for f in live]
    # The recipe's directory stands for its newest run; the text report groups by severity.
    text = CliRunner().invoke(app, ["diagnose", str(result.run_dir.parent)])
    assert text.exit_code == 0 and "WARNING [lr-too-high]" in text.output and "fix:" in text.output


def test_the_report_is_written_as_tensorboard_text(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train("train_scale_broken", ["training.epochs=2"], tmp_path)
    accumulator = EventAccumulator(str(result.run_dir / "train"), size_guidance={"tensors": 0})
    accumulator.Reload()
    text = accumulator.Tensors("report/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert "### Warnings" in text and "`initial-loss-too-high`" in text and "*fix*" in text


def test_train_prints_the_report_with_advice(tmp_path):
    out = CliRunner().invoke(app, ["train", str(RECIPES / "train_scale_broken.yaml"), "--logdir", str(tmp_path), "-q",
                                   "--set", "training.epochs=2", "--set", "training.jit_compile=false"])
    assert out.exit_code == 0, out.output
    assert "WARNING [initial-loss-too-high]" in out.output and "WARNING [unscaled-inputs]" in out.output
    assert out.output.count("fix:") >= 2


def test_diagnose_refuses_a_directory_without_a_run(tmp_path):
    out = CliRunner().invoke(app, ["diagnose", str(tmp_path / "nothing")])
    assert out.exit_code == 2 and "error: [run-not-found]" in out.output
    (tmp_path / "empty").mkdir()
    out = CliRunner().invoke(app, ["diagnose", str(tmp_path / "empty")])
    assert out.exit_code == 2 and "error: [run-not-found]" in out.output and len(out.output.strip().splitlines()) == 1


def test_the_leak_a_recipe_makes_itself_is_fixed_in_the_recipe():
    # zero_leak_broken's label-leakage told the run to np.delete column 10 of an x the recipe's
    # user never holds: the recipe appends the label itself (data.leak_label: true).
    recipe = load_recipe(RECIPES / "zero_leak_broken.yaml", FAST)
    (leak,) = [f for f in prepare_run(recipe).trainer.findings if f.code == "label-leakage"]
    assert leak.advice.startswith("Set data.leak_label: false") and "np.delete(x, 10, axis=1)" in leak.advice
