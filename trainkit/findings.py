"""The :class:`Finding` record: one thing trainkit noticed about a model, its data or its run.

Checks (before training) and diagnosis rules (during and after training) both produce findings, so
reports, the console and TensorBoard render them the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from trainkit.errors import ArgumentError

Severity = Literal["info", "warning", "error"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error")
#: Characters of the message a finding's repr keeps.
_REPR_MESSAGE = 80


@dataclasses.dataclass(frozen=True)
class Finding:
    """A diagnosed problem with its evidence and concrete advice.

    Attributes:
        code: Stable identifier, e.g. ``"dead-relu"``; never reworded between releases.
        severity: ``"info"``, ``"warning"`` or ``"error"``.
        message: What was observed, in one or two sentences.
        advice: What to change in the recipe or the code.
        evidence: The numbers behind the finding (name -> value).
        step: Global training step the finding refers to, when it refers to one.
        epoch: Epoch (0-based) the finding refers to, when it refers to one.
        layer: Layer or variable name the finding refers to, when it refers to one.
    """

    code: str
    severity: Severity
    message: str
    advice: str
    evidence: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    step: int | None = None
    epoch: int | None = None
    layer: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ArgumentError("bad-argument", f"A finding's severity must be one of {', '.join(SEVERITIES)}, got {self.severity!r}.")

    def __repr__(self) -> str:
        # One short line, as a notebook cell ending in `trainer.findings` shows each: the dataclass's
        # own repr ran ~900 characters a finding (message, advice and every evidence float in full).
        location = f" ({self.location()})" if self.location() else ""
        message = self.message if len(self.message) <= _REPR_MESSAGE else self.message[:_REPR_MESSAGE].rsplit(" ", 1)[0] + " ..."
        return f"<Finding {self.severity} [{self.code}]{location}: {message}>"

    def __str__(self) -> str:
        """The whole finding, advice included, for ``print(finding)`` (see :meth:`format`)."""
        return self.format()

    def to_dict(self) -> dict[str, Any]:
        """Returns a JSON-serialisable dict."""
        data = dataclasses.asdict(self)
        data["evidence"] = {k: _jsonable(v) for k, v in self.evidence.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """Rebuilds a finding written by :meth:`to_dict`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})

    def location(self, quote: str = "") -> str:
        """Where it was found: ``"layer dense, epoch 3, step 120"`` (empty when nowhere).

        Args:
            quote: Put around the layer name (``"`"`` for Markdown).
        """
        where = []
        if self.layer:
            where.append(f"layer {quote}{self.layer}{quote}")
        if self.epoch is not None:
            where.append(f"epoch {self.epoch + 1}")
        if self.step is not None:
            where.append(f"step {self.step}")
        return ", ".join(where)

    def format(self) -> str:
        """One human-readable block: severity, code, where, message and advice."""
        location = f" ({self.location()})" if self.location() else ""
        return f"{self.severity.upper()} [{self.code}]{location}: {self.message}\n    fix: {self.advice}"


def _jsonable(value: Any) -> Any:
    """Converts numpy scalars and arrays to plain Python values for JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):  # numbers by layer, say: kept as numbers, not one string
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)
