"""The project as the README describes it: its layout, and the linter its pyproject configures."""

from __future__ import annotations

from pathlib import Path

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
