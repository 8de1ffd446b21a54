"""The benchmark scripts run and report what they promise (issue 9's deliverable 4).

They time nothing here: each runs once at a tiny scale (``--scale``, ``--rows``), and the tests
check the shape of what comes out (every setting, finite samples/s, ratios that agree with the
samples/s they come from), so a change to trainkit's API or to TensorFlow that breaks a
benchmark fails CI instead of the next speed measurement.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SETTINGS = {"model.fit spe=1", "model.fit spe=32", "trainkit stats off", "trainkit stats on + TensorBoard"}


def benchmark(name: str) -> ModuleType:
    """Imports ``benchmarks/<name>.py`` (benchmarks/ is scripts, not a package)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


@pytest.fixture
def no_xla(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_fit's trainkit settings without XLA: each compile costs seconds, and no time is kept."""
    monkeypatch.setattr(benchmark("bench_fit"), "choose_jit_compile", lambda model: False)


@pytest.mark.usefixtures("no_xla")
def test_bench_fit_reports_every_setting_of_each_model(tmp_path: Path) -> None:
    out = tmp_path / "fit.json"
    benchmark("bench_fit").main(["--models", "mlp", "mlp-stream", "--epochs", "1", "--repeat", "1", "--no-scaling",
                                 "--scale", "0.02", "--json", str(out)])
    results = json.loads(out.read_text())
    assert results["scale"] == 0.02 and "scaling" not in results
    assert [m["model"] for m in results["models"]] == ["MLP 10-64-32-1", "MLP 10-64-32-1 from a tf.data.Dataset"]
    for model in results["models"]:
        settings = model["settings"]
        assert set(settings) == SETTINGS
        for entry in settings.values():
            assert math.isfinite(entry["samples_per_s"]) and entry["samples_per_s"] > 0
            assert entry["fit_samples_per_s"] <= entry["samples_per_s"]  # the whole call includes the epochs
        # Ratios are to the faster model.fit setting: that one is exactly 1.
        assert max(settings["model.fit spe=1"]["ratio_to_fit"], settings["model.fit spe=32"]["ratio_to_fit"]) == pytest.approx(1.0)
        on, off = settings["trainkit stats on + TensorBoard"], settings["trainkit stats off"]
        assert model["stats_on_vs_off_slowdown"] == pytest.approx(off["samples_per_s"] / on["samples_per_s"])


@pytest.mark.usefixtures("no_xla")
def test_bench_fit_scaling_table_covers_rows_and_widths() -> None:
    bench_fit = benchmark("bench_fit")
    rows = bench_fit.scaling(epochs=1, repeat=1, scale=0.01)
    assert [(r["rows"], r["width"]) for r in rows] == [(64, 64), (100, 64), (1000, 64), (100, 256), (100, 1024)]
    assert all(r["trainkit"] > 0 and r["model_fit"] > 0 for r in rows)


def test_bench_stats_reports_on_off_ratio_per_model(tmp_path: Path) -> None:
    out = tmp_path / "stats.json"
    benchmark("bench_stats").main(["--models", "mlp", "cnn", "--rows", "256", "--cnn-rows", "64", "--epochs", "1", "--repeat", "1",
                                   "--logdir", "--json", str(out)])
    results = json.loads(out.read_text())
    assert results["logdir"] is True
    by_model = {r["model"]: r for r in results["results"]}
    assert set(by_model) == {"mlp", "cnn"}
    assert by_model["mlp"]["jit_compile"] is True and by_model["cnn"]["jit_compile"] is False  # what auto picks for a long run
    for result in by_model.values():
        assert result["statistics_per_step"] > 0
        assert result["ratio"] == pytest.approx(result["samples_per_s_off"] / result["samples_per_s_on"])


def test_bench_checks_times_both_checks(capsys: pytest.CaptureFixture[str]) -> None:
    benchmark("bench_checks").main(["--rows", "2000", "--val-rows", "500", "--layers", "3", "--repeat", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[1:]] == ["check_compatibility", "check_data", "total"]


def test_profile_kernels_lists_the_kernels_statistics_add() -> None:
    # Its own process: it sets XLA_FLAGS (kernel tracing) before TensorFlow starts.
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "profile_kernels.py"), "--model", "mlp", "--scale", "0.05", "--top", "5"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    header, columns, *kernels = proc.stdout.strip().splitlines()
    assert header.startswith("mlp: kernel CPU time of one traced epoch")
    assert columns.split() == ["off", "ms", "on", "ms", "added", "kernel"]
    assert len(kernels) == 5 and float(kernels[0].split()[2]) > 0  # sorted by what the statistics add


def test_count_kernels_counts_the_xla_steps_kernels_off_and_on() -> None:
    # Its own processes: each mode sets XLA_FLAGS (the HLO dump) before TensorFlow starts.
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "count_kernels.py"), "--model", "mlp", "--list"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary, heading, *kernels = proc.stdout.strip().splitlines()
    counts = re.fullmatch(r"mlp: kernels a step, statistics off (\d+), on (\d+) \(\+(\d+)\)", summary)
    assert counts is not None, summary
    off, on, added = (int(n) for n in counts.groups())
    assert 0 < off < on and added == on - off
    assert heading.startswith("kernels with statistics outside the model")
    # The statistics' sums are products with vectors of ones, from ops the step's own code names.
    assert any(" fusion " in line and "MatMul" in line for line in kernels)
    assert len(kernels) < on


def test_bench_sweep_memory_measures_each_trial(tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    bench = benchmark("bench_sweep_memory")
    bench.main(["--mode", "compare-plain", "--trials", "2", "--json", str(out)])
    (result,) = json.loads(out.read_text())
    assert result["mode"] == "compare-plain" and len(result["rss_mb"]) == 2 and all(r > 0 for r in result["rss_mb"])
    assert bench.slope([1.0, 3.0, 5.0]) == pytest.approx(2.0)


def test_recipe_seeds_scores_recall_by_every_finding_and_alarms_by_warnings_only() -> None:
    score = benchmark("recipe_seeds").score
    runs = [
        ("broken", 0, ["a", "b"], ["a"]),  # "b" as an info finding still counts as found
        ("broken", 1, ["a"], ["a"]),
        ("clean", 0, ["note"], []),  # an info finding is no false alarm
        ("clean", 1, ["x"], ["x"]),
    ]
    result = score(runs, {"broken": {"a", "b"}}, ["clean"])
    assert (result["found"], result["expected"], result["alarms"], result["clean_runs"]) == (3, 4, 1, 2)
    assert result["misses"] == [["broken", 1, ["b"]]] and result["false_alarms"] == [["clean", 1, ["x"]]]
