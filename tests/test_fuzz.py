"""Fuzzing the CLI's inputs: whatever a user writes ends in success or one line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from trainkit.cli import app

RUNNER = CliRunner()
VALID = """task: binary
data: {source: generator, generator: learnable_binary, rows: 64, features: 3, seed: 0}
model:
  layers:
    - {type: dense, units: 3, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
training: {epochs: 1, jit_compile: false}
"""
KEYS = ["task", "data", "data.rows", "data.features", "data.source", "data.generator", "model.layers.0.units",
        "model.layers.1.activation", "loss", "optimizer", "optimizer.learning_rate", "training.epochs",
        "training.batch_size", "training.validation_split", "logging.scalars_every", "preprocessing.standardize_inputs"]
VALUES = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
    st.sampled_from(["[]", "{}", "null", "true", "1e-3", "relu", "[1, 2]", "{name: adam}", "ünïcødé", "- x"]),
)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def assert_clean_outcome(result) -> None:
    """Success, or exactly one `error: [code] ...` line with exit code 2; never a traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ["), result.output


@SETTINGS
@given(text=st.one_of(st.text(max_size=200), st.sampled_from(["", "---", "[1, 2]", "task: [", "a: b: c", "\x00", "{{}}", VALID[:40]])))
def test_random_recipe_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    assert_clean_outcome(RUNNER.invoke(app, ["check", str(path)]))


@SETTINGS
@given(key=st.one_of(st.sampled_from(KEYS), st.text(max_size=15)), value=VALUES, raw=st.booleans())
def test_random_set_overrides(tmp_path_factory, key, value, raw):
    path = tmp_path_factory.mktemp("fuzz") / "recipe.yaml"
    path.write_text(VALID)
    override = key if raw else f"{key}={value}"
    assert_clean_outcome(RUNNER.invoke(app, ["check", str(path), "--set", override]))


CSV_CASES = {
    "missing-column": ("a,b\n1,2\n3,4\n", "data-missing-column"),
    "ragged-rows": ("a,b,label\n1,2,0\n3,1\n", "data-ragged"),
    "string-in-numeric": ("a,b,label\n1,2,0\n3,x,1\n", "data-non-numeric"),
    "empty-file": ("", "data-empty"),
    "header-only": ("a,b,label\n", "data-empty"),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_bad_csv_files(tmp_path: Path, case: str):
    text, code = CSV_CASES[case]
    (tmp_path / "data.csv").write_text(text)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(VALID.replace("data: {source: generator, generator: learnable_binary, rows: 64, features: 3, seed: 0}", "data: {source: csv, path: data.csv, target: label}"))
    result = RUNNER.invoke(app, ["check", str(recipe)])
    assert_clean_outcome(result)
    assert result.exit_code == 2 and f"[{code}]" in result.output
