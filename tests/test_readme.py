"""The project as the README describes it: its layout, its dependencies, and the linter its pyproject configures."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_layout_names_every_module_and_subpackage():
    layout = (ROOT / "README.md").read_text(encoding="utf-8").split("## Layout", 1)[1].split("\n## ", 1)[0]
    package = ROOT / "trainkit"
    modules = [p.name for p in package.glob("*.py") if p.name != "__init__.py"]
    subpackages = [f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").is_file()]
    assert len(modules) > 20 and subpackages
    missing = [name for name in modules + subpackages if name not in layout]
    assert not missing, f"README's Layout lacks {missing}"


def test_the_code_passes_the_linter_configured_in_pyproject():
    # ruff is in the test extras: the README's test command (and so CI) checks the style too.
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "ruff", "check", "trainkit", "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_package_the_code_imports_is_declared_with_a_lower_bound():
    # keras and rich were not declared: TensorFlow 2.16 takes any Keras 3, and with one before 3.7
    # (no keras.tree.flatten_with_path) fit's x and y of different lengths raised an AttributeError,
    # with 3.0 every run did; typer 0.12 takes rich 10.11, which lacks the bars' MofNCompleteColumn.
    import ast
    import importlib.metadata
    import re
    import sys

    tomllib = pytest.importorskip("tomllib")  # Python 3.11

    def names(requirements: list[str]) -> dict[str, str]:
        return {re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower().replace("_", "-"): req for req in requirements}

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = names(project["dependencies"])
    extras = {name for extra in project["optional-dependencies"].values() for name in names(extra)}
    imported = set()
    for path in (ROOT / "trainkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    modules = imported - set(sys.stdlib_module_names) - {"trainkit", "__future__"}
    assert {"tensorflow", "keras", "numpy", "rich"} <= modules
    distributions = importlib.metadata.packages_distributions()
    for module in sorted(modules):
        # By its own name first: tensorflow-cpu also provides the module tensorflow.
        found = [name.lower().replace("_", "-") for name in [module, *distributions.get(module, [])]]
        dist = next((name for name in found if name in declared or name in extras), found[-1])
        if dist in declared:
            assert ">=" in declared[dist], f"{dist} is declared without a lower bound"
        else:
            assert dist in extras, f"trainkit imports {module} ({dist}), which pyproject.toml does not declare"


def test_typer_is_one_that_works_with_the_newest_click():
    # typer>=0.12 let pip keep a typer 0.12-0.17.4 next to click 8.3 or later, which those typers
    # allow but break with: `trainkit train RECIPE` printed the version and exited 0 without
    # training (typer 0.12.5, click 8.5.1), `trainkit check` a TypeError traceback (typer 0.17.4).
    import re

    tomllib = pytest.importorskip("tomllib")  # Python 3.11
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    (typer,) = [req for req in dependencies if req.startswith("typer")]
    floor = re.search(r">=\s*([\d.]+)", typer)
    assert floor is not None and tuple(int(part) for part in floor.group(1).split(".")) >= (0, 18)


def test_the_license_is_an_spdx_string_which_the_build_backend_reads():
    # `license = { text = ... }`: setuptools 77 and later (the newest, which pip builds with) warn on
    # every build that it stops building such a project from 2027-02-18; the string needs 77.
    tomllib = pytest.importorskip("tomllib")  # Python 3.11
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert isinstance(pyproject["project"]["license"], str)
    assert "setuptools>=77" in pyproject["build-system"]["requires"]


def _section(title: str) -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8").split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_command_table_names_every_command_its_flags_and_its_exit_codes():
    # The table named compare's flags but not its exit codes, which its --help gives (0 with a
    # NaN-stopped run as a row, 2 bad input, 130/143), while train's row gave train's.
    import typer.main

    from trainkit.cli import app

    section = _section("Command line")
    rows = {line.split("`")[1].split()[1]: line for line in section.splitlines() if line.startswith("| `trainkit ")}
    group = typer.main.get_command(app)
    assert set(group.commands) == set(rows), "README's command table and the CLI's commands differ"
    for name, command in group.commands.items():
        for param in command.params:
            flags = [opt for opt in param.opts if opt.startswith("-")]
            assert not flags or any(f"{flag} " in rows[name] or f"{flag}]" in rows[name] for flag in flags), f"trainkit {name} {flags} is not in README's table"
        if "Exit codes" in (command.help or ""):
            assert "exit 0" in rows[name], f"README's row of trainkit {name} lacks the exit codes its --help gives"
    assert all(opt in section for param in group.params for opt in param.opts if opt.startswith("--"))


def test_the_python_example_runs_as_written(tmp_path, monkeypatch):
    # The "## Python" section's first example, as a newcomer copies it, with 2 epochs instead of 20.
    import re

    block = re.search(r"```python\n(.*?)```", _section("Python"), re.S).group(1)
    assert "epochs=20" in block
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block.replace("epochs=20", "epochs=2"), "README.md:Python", "exec"), scope)
    history, trainer = scope["history"], scope["trainer"]
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert len(history.history["loss"]) == 2
    assert set(trainer.evaluate(scope["x_test"], scope["y_test"])) == {"loss", "accuracy"}
    assert trainer.predict(scope["x_test"]).shape == (200, 1)
    assert (tmp_path / "runs" / "my-run" / "checkpoints").is_dir()


def test_the_unsupported_input_row_gives_the_advice_a_dataset_of_sparse_batches_is_told():
    # A dataset of sparse batches is told to make them dense (.map(... tf.sparse.to_dense(x) ...)),
    # not to pad them, but the row's fix column named padded_batch alone for ragged and sparse.
    row = next(line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines() if line.startswith("| `unsupported-input` |"))
    fix = row.rstrip(" |").rsplit(" | ", 1)[1]
    assert "`padded_batch` for ragged batches" in fix and "tf.sparse.to_dense(x)" in fix
