"""Diagnosis: per-step statistics and epoch values -> findings with stable codes and advice.

* :mod:`~trainkit.diagnosis.rules` — one named rule per code; :data:`RULES` lists them all. The
  rules live in modules by family (``*_rules``), made of :mod:`~trainkit.diagnosis.rule_types`.
* :mod:`~trainkit.diagnosis.engine` — the :class:`Diagnoser`, which keeps bounded summaries of the
  statistics stream and runs the rules.
* :mod:`~trainkit.diagnosis.callback` — :class:`DiagnosisCallback`, added by the Trainer (live).
* :mod:`~trainkit.diagnosis.run_context` — the :class:`Context` a run is judged in, built when ``fit``
  starts (its layers read by :mod:`~trainkit.diagnosis.model_facts`).
* :mod:`~trainkit.diagnosis.readback` — :func:`diagnose_run_dir`, the same rules on a finished
  run's TensorBoard events (``trainkit diagnose RUN_DIR``).
* :mod:`~trainkit.diagnosis.report` — text and markdown renderings.
"""

from trainkit.diagnosis.baseline import Baseline, chance_loss
from trainkit.diagnosis.callback import DiagnosisCallback
from trainkit.diagnosis.engine import Context, Diagnoser
from trainkit.diagnosis.report import render_markdown, render_text
from trainkit.diagnosis.rule_types import Rule, Thresholds
from trainkit.diagnosis.rules import DIAGNOSIS_CODES, RULES

__all__ = [
    "DIAGNOSIS_CODES",
    "RULES",
    "Baseline",
    "Context",
    "Diagnoser",
    "DiagnosisCallback",
    "Rule",
    "Thresholds",
    "chance_loss",
    "render_markdown",
    "render_text",
]
