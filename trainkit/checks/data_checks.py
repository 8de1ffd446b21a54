"""Fit-time data checks: labels vs task and loss, scales, NaN/Inf, shapes, overlap, leakage.

Each rule is a small named function over a :class:`DataContext` returning an
:class:`~trainkit.checks.compatibility.Issue` or ``None``, registered in :data:`DATA_RULES` in the
order they are tried. :data:`DATA_ERROR_CODES` and :data:`DATA_WARNING_CODES` list the codes.

Cost: numpy arrays are checked fully where the check is linear and cheap (NaN/Inf, label values,
ranges); the scale statistics, train/validation overlap and leakage read a strided sample of at
most ``sample_rows`` rows (fewer for wide rows). A ``tf.data.Dataset`` (or a ``keras.utils.PyDataset``)
is judged by its first ``sample_batches`` batches: inside ``fit``, the ones the trainer already
read and keeps (a :class:`~trainkit.checks.data_sampling.DatasetSample`); called on a dataset,
through a fresh iterator, so the iterator the training loop uses later is untouched.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import keras
import numpy as np

from trainkit.checks.compatibility import (
    Issue,
    describe_loss,
    losses_per_output,
    tasks_per_output,
    to_finding,
    validate_allow,
    validate_task,
)
from trainkit.checks.data_arrays import (
    _input_list,
    _label_list,
    _row_weights,
    _unmatched_targets,
    _unnamed_per_output,
)
from trainkit.checks.data_context import (
    DEFAULT_SAMPLE_ROWS,
    DataContext,
    Target,
    _class_ids,
    _feature,
    _is_numeric,
    _row_budget,
    _stride,
)
from trainkit.checks.data_sampling import _is_batch_source, _sample_batches
from trainkit.checks.label_checks import label_format, labels_out_of_range, single_class
from trainkit.checks.model_inspect import (
    OutputInfo,
    embedding_inputs,
    find_outputs,
    input_names,
    input_shapes,
    position_keeping_layers,
    scales_own_inputs,
)
from trainkit.checks.row_checks import (
    batch_larger_than_data,
    class_imbalance,
    few_training_rows,
    sample_weight_all_zero,
    sample_weight_negative,
)
from trainkit.checks.scale_checks import unscaled_inputs, unscaled_targets
from trainkit.checks.shape_checks import input_structure_issue, shape_mismatch
from trainkit.checks.value_checks import embedding_ids, non_finite_data
from trainkit.errors import DataError
from trainkit.findings import Finding, Severity

#: Train rows x features hashed fully for the overlap check before it samples.
_HASH_VALUES = 20_000_000
#: Rows and values read by the leakage check.
_LEAK_ROWS, _LEAK_VALUES, _LEAK_MAX_FEATURES = 20_000, 2_000_000, 4096

OVERLAP_SHARE = 0.01
LEAK_CORRELATION = 0.9999
#: A feature whose classes lie in separate intervals at least this many within-class standard
#: deviations apart separates them alone (a noisy copy of the label, y + 0.1 N(0, 1), measures
#: ~3; a feature an honest rule thresholds, y = x0 > 0, has its classes touching).
SEPARATION_GAP = 1.0
#: Share of a feature's variance its class means explain (the correlation ratio) from which the
#: separation is checked; a label copy with noise at a tenth of the classes' spacing explains ~99%.
_SEPARATION_SCREEN_SHARE = 0.9
_SEPARATION_SCREEN_FEATURES = 8
_ONE_HOT_CLASSES = 64  # class sums as a product with a one-hot matrix up to this many classes


@dataclasses.dataclass(frozen=True)
class DataRule:
    """A registered data rule: stable code, severity and function."""

    code: str
    severity: Severity
    check: Callable[[DataContext], Issue | None]


# ---------------------------------------------------------------------------------------------
# Small numpy helpers.


# ---------------------------------------------------------------------------------------------
# Errors.


# ---------------------------------------------------------------------------------------------
# Warnings.


def _row_hashes(a: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One float64 per row: a random projection, equal for identical rows (chunked)."""
    flat = a.reshape(len(a), -1)
    out = np.empty(len(flat), dtype=np.float64)
    step = max(1, 4_000_000 // max(1, flat.shape[1]))
    for start in range(0, len(flat), step):
        out[start:start + step] = flat[start:start + step].astype(np.float64) @ weights
    return out


def train_validation_overlap(ctx: DataContext) -> Issue | None:
    """Identical rows in the training and validation inputs."""
    if not ctx.x_val or len(ctx.xs) != 1 or len(ctx.x_val) != 1:
        return None
    train, val = ctx.xs[0], ctx.x_val[0]
    if not (_is_numeric(train) and _is_numeric(val)) or train.shape[1:] != val.shape[1:] or not len(train) or not len(val):
        return None
    width = int(np.prod(train.shape[1:])) if train.ndim > 1 else 1
    weights = np.random.default_rng(4).standard_normal(width)
    train_rows = _stride(train, max(1, _HASH_VALUES // width))
    val_rows = _stride(val, _row_budget(val, ctx.sample_rows))
    h_train = _row_hashes(train_rows, weights)
    h_val = _row_hashes(val_rows, weights)
    found = np.isin(h_val, h_train)
    hits = int(found.sum())
    if hits == 0:
        return None
    share = hits / len(h_val) * (len(train) / len(train_rows))
    if share < OVERLAP_SHARE or hits < 2:
        return None
    # Discrete data repeats rows by nature: compare with how often training rows repeat themselves.
    dup_rate = 1.0 - np.unique(h_train).size / h_train.size
    if share <= 2.0 * dup_rate:
        return None
    first = int(np.argmax(found)) * max(1, math.ceil(len(val) / max(1, len(val_rows))))
    share = min(share, 1.0)
    return Issue(
        f"About {share:.1%} of the validation rows{ctx.where} also appear in the training inputs "
        f"({hits} of {len(h_val)} checked; the first at x_val row {first}), while training rows "
        f"repeat themselves only {dup_rate:.1%} of the time. Validation then measures memory, not "
        f"generalisation, and early stopping and model choice are biased.",
        "Split before any augmentation or oversampling, and drop duplicates across the split, e.g. "
        "with np.unique(x, axis=0, return_index=True) before splitting.",
        {"overlap_share": share, "rows_found": hits, "rows_checked": len(h_val), "first_val_row": first,
         "train_duplicate_rate": dup_rate})


def _leak_sample(ctx: DataContext) -> tuple[np.ndarray, np.ndarray, Target] | None:
    """``(x rows, y rows, target)`` the leakage checks read: a strided sample of one 2-D numeric
    input and its one target, or ``None`` when the data has another form (drawn once per context)."""
    if "leak_sample" not in ctx.memo:
        ctx.memo["leak_sample"] = _draw_leak_sample(ctx)
    return ctx.memo["leak_sample"]


def _draw_leak_sample(ctx: DataContext) -> tuple[np.ndarray, np.ndarray, Target] | None:
    if len(ctx.xs) != 1 or len(ctx.targets) != 1 or ctx.targets[0].y is None:
        return None
    x, t = ctx.xs[0], ctx.targets[0]
    if x.ndim != 2 or not _is_numeric(x) or x.shape[1] > _LEAK_MAX_FEATURES or len(x) < 20:
        return None
    rows = max(200, min(_LEAK_ROWS, _LEAK_VALUES // max(1, x.shape[1])))
    xs = _stride(x, rows).astype(np.float64)
    y = _stride(t.y, rows)
    if not np.isfinite(xs).all() or not _is_numeric(y):
        return None
    return xs, y, t


def _sampled_class_ids(sample: tuple[np.ndarray, np.ndarray, Target] | None) -> np.ndarray | None:
    """The sampled labels as class ids, for a classification target with 2+ classes in the sample."""
    if sample is None or sample[2].task not in ("binary", "multiclass"):
        return None
    ids = _class_ids(sample[2], sample[1])
    return ids if ids is not None and np.unique(ids).size >= 2 else None


def _few_values(rows: int) -> int:
    """The most distinct values a feature of ``rows`` sampled rows has to count as discrete."""
    return max(2, min(32, rows // 20))


def label_leakage(ctx: DataContext) -> Issue | None:
    """A feature equal to the label, or one whose few values each map to a single class."""
    sample = _leak_sample(ctx)
    names = ctx.feature_names
    if sample is not None and sample[2].task == "regression":
        return _regression_leak(*sample, names=names)
    ids = _sampled_class_ids(sample)
    if ids is None:
        return None
    assert sample is not None
    xs, _, _ = sample
    n = len(xs)
    equal = np.flatnonzero((xs == ids[:, None]).all(axis=0))
    if len(equal):
        j = int(equal[0])
        return _leak_issue(j, f"{_feature(j, names, capital=True)} is identical to the class label in all {n} sampled rows",
                           {"feature": j, "rows_checked": n, "distinct_values": int(np.unique(xs[:, j]).size)}, names)
    few = _few_values(n)
    # Only features with few distinct values are read in full: one with more than `few` in its
    # first rows has more in all of them (sorting every column cost ~25 ms for 5000 x 256).
    head = np.sort(xs[: 8 * few], axis=0)
    maybe = np.flatnonzero(1 + (np.diff(head, axis=0) != 0).sum(axis=0) <= few)
    distinct = np.zeros(xs.shape[1], np.int64)
    distinct[maybe] = 1 + (np.diff(np.sort(xs[:, maybe], axis=0), axis=0) != 0).sum(axis=0)
    for j in np.flatnonzero((distinct >= 2) & (distinct <= few))[:256]:
        col = xs[:, j]
        order = np.argsort(col, kind="stable")
        c, lab = col[order], ids[order]
        if np.all((lab[1:] == lab[:-1]) | (c[1:] != c[:-1])):
            return _leak_issue(
                int(j), f"Each of the {int(distinct[j])} values of {_feature(int(j), names)} maps to a single "
                f"class in all {n} sampled rows, so it predicts the label perfectly",
                {"feature": int(j), "rows_checked": n, "distinct_values": int(distinct[j])}, names)
    return None


def one_feature_separates(ctx: DataContext) -> Issue | None:
    """A continuous feature that alone puts every class in an interval of its own.

    Only a note: the label plus a little noise (a leak) looks like this, and so do well-separated
    clusters (13 of 20 ``make_blobs`` data sets). Nothing in one feature tells them apart; the
    user can, by knowing where the feature comes from.
    """
    sample = _leak_sample(ctx)
    ids = _sampled_class_ids(sample)
    if ids is None:
        return None
    assert sample is not None
    xs = sample[0]
    separating = _separating_feature(xs, ids)
    if separating is None:
        return None
    j, gap, share = separating
    names = ctx.feature_names
    return Issue(
        f"{_feature(j, names, capital=True)} alone separates the classes: each class lies in an interval of its own, the "
        f"closest two {gap:.1f} within-class standard deviations apart, in all {len(xs)} sampled rows "
        f"(its class means explain {share:.1%} of its variance). Either the classes are that easy, or "
        f"the feature is the label leaking in (a noisy copy of it, or something computed from it).",
        f"If {_feature(j, names)} is not known at prediction time, or is derived from the label, remove it "
        f"({_removal(j, names)}); a validation score near 100% with it is then not real.",
        {"feature": j, "rows_checked": len(xs), "gap_in_within_class_stds": round(gap, 3), "variance_explained": round(share, 4)})


def _separating_feature(xs: np.ndarray, ids: np.ndarray) -> tuple[int, float, float] | None:
    """``(feature, smallest gap in within-class stds, variance share)`` of a feature whose
    classes occupy disjoint, well-separated intervals, or ``None``.

    Vectorised screen first (the share of each feature's variance the class means explain, from
    per-class sums), then an exact check, sorting only the few features that pass it.
    """
    classes, inverse = np.unique(ids, return_inverse=True)
    counts = np.bincount(inverse)
    means = _class_sums(xs, inverse, len(classes)) / counts[:, None]
    centred = xs - xs.mean(axis=0)
    total = (centred * centred).sum(axis=0)
    between = (counts[:, None] * (means - xs.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, between / np.where(total > 0, total, 1.0), 0.0)
    candidates = np.argsort(-share)[:_SEPARATION_SCREEN_FEATURES]
    for j in candidates[share[candidates] >= _SEPARATION_SCREEN_SHARE]:
        by_value = np.argsort(xs[:, j], kind="stable")
        column, labels = xs[by_value, j], inverse[by_value]
        if 1 + np.count_nonzero(np.diff(column)) <= _few_values(len(xs)):
            continue  # a discrete feature: label-leakage's to judge
        edges = np.flatnonzero(labels[1:] != labels[:-1])
        if edges.size != classes.size - 1:  # some class is split in two, or two classes mix
            continue
        within = math.sqrt(max(total[j] - between[j], 0.0) / len(xs))
        gap = float((column[edges + 1] - column[edges]).min())
        if within > 0 and gap >= SEPARATION_GAP * within:
            return int(j), gap / within, float(share[j])
    return None


def _class_sums(xs: np.ndarray, inverse: np.ndarray, classes: int) -> np.ndarray:
    """``[classes, features]``: the sum of each class's rows (``inverse``: each row's class index)."""
    if classes <= _ONE_HOT_CLASSES:  # one product: ~0.4 ms for 5000 x 256, reduceat ~10 ms
        one_hot = np.zeros((len(xs), classes))
        one_hot[np.arange(len(xs)), inverse] = 1.0
        return one_hot.T @ xs
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=classes))[:-1]])
    return np.add.reduceat(xs[order], starts, axis=0)


def _regression_leak(xs: np.ndarray, y: np.ndarray, t: Target, names: Sequence[str] | None = None) -> Issue | None:
    if xs.shape[1] < 2 or y.reshape(len(y), -1).shape[1] != 1:
        return None
    target = y.reshape(-1).astype(np.float64)
    if not np.isfinite(target).all():
        return None
    xc, yc = xs - xs.mean(axis=0), target - target.mean()
    denom = np.sqrt((xc * xc).sum(axis=0) * (yc * yc).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(denom > 0, (xc * yc[:, None]).sum(axis=0) / np.where(denom > 0, denom, 1.0), 0.0)
    j = int(np.argmax(np.abs(corr)))
    if abs(corr[j]) < LEAK_CORRELATION:
        return None
    return _leak_issue(j, f"{_feature(j, names, capital=True)} is a linear copy of the target (correlation {corr[j]:.5f} "
                          f"in {len(xs)} sampled rows)",
                       {"feature": j, "correlation": float(corr[j]), "rows_checked": len(xs)}, names)


def _leak_issue(j: int, found: str, evidence: dict[str, Any], names: Sequence[str] | None = None) -> Issue:
    return Issue(
        f"{found}: it is probably the label, or something computed from it, leaking into the inputs. "
        f"The model will learn this shortcut and fail on data where the label is unknown.",
        f"Remove {_feature(j, names)} ({_removal(j, names)}) unless it is really available at "
        f"prediction time, and check how the features were built.", evidence)


def _removal(j: int, names: Sequence[str] | None) -> str:
    """How to leave feature ``j`` out: from x in Python, or with ``data.drop`` in a recipe."""
    recipe = f"; in a recipe, data: {{drop: [{names[j]}]}}" if names is not None and j < len(names) else ""
    return f"x = np.delete(x, {j}, axis=1){recipe}"


#: Every data rule, in the order they are tried; the first error wins.
DATA_RULES: tuple[DataRule, ...] = (
    DataRule("shape-mismatch", "error", shape_mismatch),
    DataRule("non-finite-data", "error", non_finite_data),
    DataRule("label-format", "error", label_format),
    DataRule("single-class", "error", single_class),
    DataRule("sample-weight-all-zero", "error", sample_weight_all_zero),
    DataRule("sample-weight-negative", "error", sample_weight_negative),
    DataRule("embedding-ids", "error", embedding_ids),
    DataRule("labels-out-of-range", "error", labels_out_of_range),
    DataRule("unscaled-inputs", "warning", unscaled_inputs),
    DataRule("unscaled-targets", "warning", unscaled_targets),
    DataRule("train-validation-overlap", "warning", train_validation_overlap),
    DataRule("label-leakage", "warning", label_leakage),
    DataRule("class-imbalance", "warning", class_imbalance),
    DataRule("few-training-rows", "warning", few_training_rows),
    DataRule("batch-larger-than-data", "warning", batch_larger_than_data),
    DataRule("one-feature-separates", "info", one_feature_separates),
)
DATA_ERROR_CODES: tuple[str, ...] = tuple(r.code for r in DATA_RULES if r.severity == "error")
DATA_WARNING_CODES: tuple[str, ...] = tuple(r.code for r in DATA_RULES if r.severity == "warning")
DATA_INFO_CODES: tuple[str, ...] = tuple(r.code for r in DATA_RULES if r.severity == "info")
#: The rules that hold for any data a model is run on, evaluation data included: the others judge
#: data to train on (one class, few rows, leakage, scales).
EVALUATION_CODES: frozenset[str] = frozenset({
    "shape-mismatch", "non-finite-data", "label-format", "labels-out-of-range", "sample-weight-all-zero", "sample-weight-negative", "embedding-ids"})
#: Code of the info finding returned when the data cannot be read without consuming it.
DATA_NOT_INSPECTABLE = "data-not-inspectable"


# ---------------------------------------------------------------------------------------------
# Reading the data.


def check_data(
    x: Any,
    y: Any = None,
    *,
    model: keras.Model,
    loss: keras.losses.Loss,
    task: Any,
    x_val: Any = None,
    y_val: Any = None,
    sample_batches: int = 8,
    allow: Collection[str] = (),
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    sample_weight: Any = None,
    batch_size: int | None = None,
    evaluation: bool = False,
    feature_names: Sequence[str] | None = None,
) -> list[Finding]:
    """Checks the data against the task, the loss and the model before the first step.

    Args:
        x: Inputs: a numpy array (or list/dict of arrays for several inputs), or a
            ``tf.data.Dataset``/``keras.utils.PyDataset`` yielding ``(x, y)`` or ``(x, y, w)``,
            or a :class:`~trainkit.checks.data_sampling.DatasetSample` of such a dataset's first
            batches.
        y: Labels for array inputs (a list/dict for several outputs); ``None`` with a dataset.
        model: The model (its inputs, outputs and output activations are read, never called).
        loss: The resolved loss (a list/dict gives one per output).
        task: ``binary``, ``multiclass``, ``multilabel`` or ``regression``; a list or dict gives
            one per output.
        x_val, y_val: Validation data, in the same forms (checked for NaN, label format and overlap).
        sample_batches: Batches read from a dataset (through a fresh iterator) or taken from a
            :class:`~trainkit.checks.data_sampling.DatasetSample`.
        allow: Error codes to downgrade to warnings.
        sample_rows: Row budget of the sampled checks (scales, overlap, leakage).
        sample_weight: The training rows' weights for array inputs (sample weight times class
            weight): ``class-imbalance`` stays silent when they even out the classes.
        batch_size: Rows per batch of the training to come (numpy data), for
            ``batch-larger-than-data``; ``None`` skips that check.
        evaluation: ``x`` and ``y`` are data to evaluate, not to train on: only the rules of
            :data:`EVALUATION_CODES` run (one class only, a few rows or unscaled inputs are no
            mistake there, and their findings would belong to no run).
        feature_names: The columns of a single 2-D ``x`` (a csv file's header), to name features
            by name as well as by index.

    Returns:
        Warning findings (allowed errors included, as warnings).

    Raises:
        DataError: for the first error whose code is not in ``allow``.
    """
    validate_task(task)
    allowed = validate_allow(allow)
    outputs = find_outputs(model)
    shapes = input_shapes(model)
    ranks = [len(s) for s in shapes] if shapes else None
    where = ""
    if _is_batch_source(x):
        sampled = _sample_batches(x, sample_batches, ranks)
        if sampled is None:
            return []
        x, y, dataset_weights, batches = sampled
        # Weights the dataset carries (with class_weight folded in by fit) weigh its sampled rows.
        sample_weight = dataset_weights if sample_weight is None else sample_weight
        where = f" in the first {batches} batch{'es' if batches != 1 else ''}"
    elif not isinstance(x, np.ndarray | Mapping | list | tuple) and hasattr(x, "__next__"):
        return [Finding(code=DATA_NOT_INSPECTABLE, severity="info",
                        message="x is an iterator: it cannot be sampled without consuming it, so the data checks were skipped.",
                        advice="Pass numpy arrays or a tf.data.Dataset to have the data checked.")]
    if _is_batch_source(x_val):
        sampled = _sample_batches(x_val, sample_batches, ranks)
        x_val, y_val = (sampled[0], sampled[1]) if sampled else (None, None)
    names = input_names(model)
    xs = _input_list(x, names)
    xv = _input_list(x_val, names) if x_val is not None else None
    ys = _label_list(y, outputs)
    unmatched = _unmatched_targets(y, outputs, ys)
    yvs = _label_list(y_val, outputs) if y_val is not None else [None] * len(ys)
    keys: list[str] | None = None  # a subclassed model's outputs, named by a dict of targets
    if outputs:
        losses, tasks = losses_per_output(outputs, loss), tasks_per_output(outputs, task)
    else:  # outputs unknown before a call (subclassed): by position (or y's keys), one per target
        keys = sorted(map(str, y)) if isinstance(y, Mapping) and len(y) == len(ys) > 1 else None
        losses = [describe_loss(one) for one in _unnamed_per_output(loss, len(ys), keys)]
        tasks = _unnamed_per_output(task, len(ys), keys)
    outs: list[OutputInfo | None] = list(outputs) if outputs else [None] * len(ys)
    if len(outs) == 1:
        label_names = ["y"]
    elif not outputs and keys:
        label_names = [f"y[{k!r}]" for k in keys]
    else:
        label_names = [f"y[{o.key or o.name!r}]" if o is not None else f"y[{i}]" for i, o in enumerate(outs)]
    targets = [Target(*parts) for parts in zip(outs, losses, ys, yvs, label_names, tasks, strict=False)]
    ctx = DataContext(xs=xs, x_val=xv, targets=targets, input_shapes=shapes,
                      scales_inputs=scales_own_inputs(model), where=where, sample_rows=sample_rows,
                      position_layers=position_keeping_layers(model), unmatched_inputs=input_structure_issue(x, names),
                      unmatched_targets=unmatched, sample_weight=_row_weights(sample_weight), batch_size=batch_size,
                      embeddings=embedding_inputs(model), feature_names=tuple(feature_names) if feature_names else None)
    findings: list[Finding] = []
    for rule in DATA_RULES:
        if evaluation and rule.code not in EVALUATION_CODES:
            continue
        issue = rule.check(ctx)
        if issue is None:
            continue
        if rule.severity == "error" and rule.code not in allowed:
            raise DataError(rule.code, f"{issue.message} {issue.advice}")
        findings.append(to_finding(rule.code, rule.severity, issue))
    return findings
