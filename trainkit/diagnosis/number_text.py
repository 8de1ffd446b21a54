"""How diagnosis messages write numbers: 4 significant digits, ratios as ``2.5x``."""

from __future__ import annotations

import math


def format_number(value: float | None) -> str:
    """``value`` with four significant digits for messages; ``n/a`` for ``None``, NaN or inf."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}"


def times_text(ratio: float) -> str:
    """A ratio as ``2.5x`` / ``244x`` / ``1.151e+30x`` (a diverged loss printed 31 digits)."""
    return f"{ratio:.2g}x" if abs(ratio) < 10 else f"{ratio:.3g}x" if abs(ratio) < 1000 else f"{ratio:.4g}x"
