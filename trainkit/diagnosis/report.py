"""Rendering findings: plain text for the terminal, markdown for TensorBoard, dicts for JSON.

Findings are grouped by severity (errors, then warnings, then info), each with where it happened,
what was seen and the fix, so the report reads top-down from what must change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from trainkit.findings import SEVERITIES, Finding

_ORDER = tuple(reversed(SEVERITIES))  # error, warning, info
_TITLES = {"error": "errors", "warning": "warnings", "info": "notes"}


def group(findings: Iterable[Finding]) -> dict[str, list[Finding]]:
    """Findings by severity, errors first, keeping their order within a severity."""
    groups: dict[str, list[Finding]] = {s: [] for s in _ORDER}
    for finding in findings:
        groups[finding.severity].append(finding)
    return groups


def render_text(findings: Sequence[Finding]) -> str:
    """The report for the terminal: a heading per severity, then each finding with its fix."""
    if not findings:
        return "diagnosis: no findings"
    groups = group(findings)
    counts = ", ".join(f"{len(groups[s])} {_TITLES[s] if len(groups[s]) != 1 else s}" for s in _ORDER if groups[s])
    lines = [f"diagnosis: {counts}"]
    for severity in _ORDER:
        for finding in groups[severity]:
            lines.append(finding.format())
    return "\n".join(lines)


def _where(finding: Finding) -> str:
    return finding.location(quote="`")


def render_markdown(findings: Sequence[Finding], unfinished: str | None = None, *, resumable: bool = True) -> str:
    """The report as markdown (TensorBoard's text dashboard): sections by severity.

    Args:
        findings: The run's findings.
        unfinished: Why the run ended early (``"interrupted"``, ``"failed"``), when it did: its
            end-of-run verdicts were not made, and "nothing looks wrong" would claim they were.
        resumable: Whether the unfinished run has a checkpoint to resume from.
    """
    # A run that stopped before its first checkpoint (an error in its first 30 s) cannot be
    # resumed: "Resume it" sent the user to a resume that refused it (no checkpoint).
    then = "Resume it to have them." if resumable else "It stopped before its first checkpoint and cannot be resumed: train it again to have them."
    note = (f"**Unfinished**: the run was {'interrupted' if unfinished == 'interrupted' else 'ended by an error'} after "
            f"the epochs shown; the end-of-run verdicts (overfitting, underfitting, loss at chance...) were not made. {then}\n\n"
            if unfinished else "")
    if not findings:
        return note + ("**No findings** so far." if unfinished else "**No findings**: nothing in the checks or the training statistics looks wrong.")
    lines: list[str] = [note.rstrip()] if note else []
    groups = group(findings)
    for severity in _ORDER:
        if not groups[severity]:
            continue
        lines.append(f"### {_TITLES[severity].capitalize()} ({len(groups[severity])})")
        for finding in groups[severity]:
            where = _where(finding)
            lines.append(f"- **`{finding.code}`**{' (' + where + ')' if where else ''}: {finding.message}")
            # Four spaces: TensorBoard's markdown (Python-Markdown) nests a list item only so
            # indented; with two the advice was a finding of its own in the list.
            lines.append(f"    - *fix*: {finding.advice}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def codes(findings: Iterable[Finding], severities: Iterable[str] = SEVERITIES) -> list[str]:
    """The codes of the findings of the given severities, in order, without repeats."""
    wanted = set(severities)
    return list(dict.fromkeys(f.code for f in findings if f.severity in wanted))
