"""The README's layout describes the package as it is."""

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
