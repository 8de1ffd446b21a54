"""Groups of finding codes that rules of other families consult, and which of them a run has found.

A rule steps aside, or changes its advice, when another family's finding explains the run better
(no "raise the learning rate" next to a finding that says to lower it). The groups live here, not
with either family, so that every rule module can import them without a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trainkit.diagnosis.engine import Diagnoser


#: Findings whose advice is to lower the learning rate: no rule may then advise raising it.
#: Saturation counts as a warning only (its info note stalls nothing).
LR_LOWERING = ("lr-too-high", "diverging-loss", "exploding-gradients", "dead-relu", "saturated-activations")
#: Findings that explain tiny updates by gradients that do not flow, whatever the learning rate.
GRADIENT_BLOCKED = ("dead-relu", "saturated-activations", "vanishing-gradients")


#: Findings that explain an end loss far above chance (the updates overshoot or blew up).
OVERSHOOTING = ("nan-loss", "lr-too-high", "diverging-loss", "exploding-gradients")
#: Findings that explain a loss that stays at chance: the model could not learn.
CANNOT_LEARN = (*OVERSHOOTING, "weights-frozen", "dead-relu", "saturated-activations", "vanishing-gradients",
                "vanishing-gradients-through-time")


def found_codes(view: Diagnoser, codes: Iterable[str]) -> list[str]:
    """Those of ``codes`` found so far in the run (as warnings or errors), in ``codes``' order."""
    found = {f.code for f in view.findings if f.severity != "info"}
    return [code for code in codes if code in found]


def lr_lowering_found(view: Diagnoser) -> list[str]:
    """The codes of :data:`LR_LOWERING` found so far in the run."""
    return found_codes(view, LR_LOWERING)
