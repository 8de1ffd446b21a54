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
    from trainkit.findings import Finding


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


#: Evidence keys of a dead-relu or saturated-activations finding whose units were already dead or
#: saturated at the first step: the initialisation (or the input scale) did it, not the learning
#: rate, and its advice does not lower the rate.
FROM_INIT_EVIDENCE = ("first_step_dead_fraction", "first_step_saturated_fraction")


def _from_init(finding: Finding) -> bool:
    return any(key in finding.evidence for key in FROM_INIT_EVIDENCE)


def lr_lowering_found(view: Diagnoser) -> list[str]:
    """The codes of :data:`LR_LOWERING` found so far in the run, whose advice lowers the rate.

    Not a dead-relu or saturated-activations finding of units dead or saturated before the first
    update (:func:`init_blocked_found`): its advice says the learning rate did not do it, and
    plateau's "lower the learning rate (see dead-relu)" beside it contradicted it.
    """
    lowering = {f.code for f in view.findings if f.severity != "info" and not _from_init(f)}
    return [code for code in LR_LOWERING if code in lowering]


def init_blocked_found(view: Diagnoser) -> list[str]:
    """The codes of dead-relu and saturated-activations findings (warnings) of units already dead or
    saturated at the run's first step, and no others of that code: their fix is the initialisation
    or the inputs, so no rule may advise raising or lowering the learning rate beside them."""
    lowering = lr_lowering_found(view)
    blocked = {f.code for f in view.findings if f.severity != "info" and _from_init(f)}
    return [code for code in GRADIENT_BLOCKED if code in blocked and code not in lowering]
