"""Checks run before training: model/loss/task compatibility (construction) and data (fit start).

``check_compatibility`` raises :class:`~trainkit.errors.CompatibilityError` and ``check_data``
raises :class:`~trainkit.errors.DataError`, each with a stable ``.code``; both return the warnings as
:class:`~trainkit.findings.Finding` records. The codes are listed in one place each:
:data:`COMPATIBILITY_CODES`, :data:`DATA_ERROR_CODES`, :data:`DATA_WARNING_CODES` and
:data:`DATA_INFO_CODES` (and :data:`COMPILE_IGNORED`, of ``check_compiled``: a model compiled with
another loss, optimizer or metrics than the Trainer's).
"""

from trainkit.checks.compatibility import (
    COMPATIBILITY_CODES,
    COMPATIBILITY_ERROR_CODES,
    COMPATIBILITY_RULES,
    COMPATIBILITY_WARNING_CODES,
    TASKS,
    LossInfo,
    check_compatibility,
    describe_loss,
    validate_task,
)
from trainkit.checks.compile_checks import (
    COMPILE_IGNORED,
    check_compiled,
    setup_difference,
    setup_record,
)
from trainkit.checks.data_checks import (
    DATA_ERROR_CODES,
    DATA_INFO_CODES,
    DATA_RULES,
    DATA_WARNING_CODES,
    check_data,
)
from trainkit.checks.data_sampling import DatasetSample
from trainkit.checks.model_inspect import (
    ACTIVATION_RANGES,
    HiddenLayerInfo,
    OutputInfo,
    find_outputs,
    hidden_layers,
)

__all__ = [
    "ACTIVATION_RANGES",
    "COMPATIBILITY_CODES",
    "COMPATIBILITY_ERROR_CODES",
    "COMPATIBILITY_RULES",
    "COMPATIBILITY_WARNING_CODES",
    "COMPILE_IGNORED",
    "DATA_ERROR_CODES",
    "DATA_INFO_CODES",
    "DATA_RULES",
    "DATA_WARNING_CODES",
    "TASKS",
    "DatasetSample",
    "HiddenLayerInfo",
    "LossInfo",
    "OutputInfo",
    "check_compatibility",
    "check_compiled",
    "check_data",
    "describe_loss",
    "find_outputs",
    "hidden_layers",
    "setup_difference",
    "setup_record",
    "validate_task",
]
