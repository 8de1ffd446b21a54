"""Whether the validation rows hold the classes the way the training rows do
(``validation-class-mismatch``), their regression targets the range the training targets span
(``validation-target-range``), and their inputs and regression targets the scale the training
rows have (``validation-scale-mismatch``), and whether a validation dataset's pipeline draws random
numbers (``validation-augmented``).

The classic cause is data sorted by label: ``fit(validation_split=...)`` holds out the LAST rows,
before any shuffling (as ``model.fit`` does), so sorted iris validates on class 2 alone, and sorted
MNIST on the digits the training rows never see. ``val_loss`` then measures a class or two, early
stopping watches it, and nothing says why it looks so odd.

Validation rows of one class are always reported: whatever the cause (a rare class that drew no
validation row, too), the validation values measure that class alone, and Keras's AUC, precision
and recall read 0 whatever the model does. Why is judged by how likely the split is: drawn at
random from the pooled rows, how often would one class fill all the validation rows? Below
:data:`UNLIKELY_SPLIT` the rows look sorted; above it (5 validation rows of 20 balanced ones, 3%;
200 rows without one of 2% positives, 1%) too few rows were held out for the rare class. A class
the training rows lack, held out in validation, is reported only when chance explains it less
than once in :data:`UNLIKELY_SPLIT` tries (every row of a class landing in validation): one rare
row held out by chance is no mistake. Regression rows sorted by target show the same way: every
validation target beyond the training range.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from trainkit.checks.compatibility import CLASSIFICATION_LOSSES, Issue
from trainkit.checks.data_context import (
    DataContext,
    Target,
    channels_last,
    class_ids,
    feature_label,
    format_number,
    input_label,
    is_numeric,
    reads_image,
    row_budget,
    strided_rows,
    training_rows_stand_for_all,
    validation_name,
    validation_rows_all,
    validation_rows_drawn,
    validation_rows_stand_for_all,
)

#: A split chance explains less often than this is reported.
UNLIKELY_SPLIT = 1e-4


def _log_choose(n: int, k: int) -> float:
    """``log(C(n, k))`` without overflow."""
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _all_drawn(group: int, draws: int, total: int) -> float:
    """Chance that ``draws`` rows drawn at random from ``total`` are all from a group of ``group``."""
    if draws > group:
        return 0.0
    return math.exp(_log_choose(group, draws) - _log_choose(total, draws))


def _split_chance(train_counts: np.ndarray, val_counts: np.ndarray) -> tuple[float, float]:
    """For a random split of the pooled rows into as many validation rows as here: the chance
    that one class fills every validation row, and that every row of some class lands there
    (each summed over the classes: a bound, exact enough to tell order from chance)."""
    pooled = train_counts + val_counts
    total, n_val = int(pooled.sum()), int(val_counts.sum())
    one_class = sum(_all_drawn(int(m), n_val, total) for m in pooled if m)
    # Every row of a class of m rows in validation: the m rows all drawn among the n_val.
    whole_class = sum(_all_drawn(n_val, int(m), total) for m in pooled if m)
    return min(1.0, one_class), min(1.0, whole_class)


def _counts_text(counts: np.ndarray) -> str:
    """``0: 50, 1: 50, 2: 20`` for the classes present."""
    return ", ".join(f"{c}: {int(n)}" for c, n in enumerate(counts) if n)


def _stratified_split(pooled: np.ndarray) -> str | None:
    """sklearn's stratified split of these rows (``pooled``: the class counts of the training and
    validation rows together), with a ``test_size`` it accepts; ``None`` where none is.

    ``train_test_split(..., stratify=y)`` needs two rows of every class and as many rows as classes
    on each side: 4 rows told ``test_size=0.2, stratify=y`` raise "The test_size = 1 should be
    greater or equal to the number of classes = 2", and a class of one row cannot be split at all.
    """
    counts = pooled[pooled > 0]
    if counts.size < 2 or counts.min() < 2:
        return None
    classes, total = int(counts.size), int(counts.sum())
    held = math.ceil(0.2 * total)  # sklearn rounds a fractional test_size up
    size = "0.2" if min(held, total - held) >= classes else str(classes)  # else one validation row a class
    return f"sklearn's train_test_split(x, y, test_size={size}, stratify=y)"


def _single_row_classes(pooled: np.ndarray) -> str:
    """Why no stratified split helps, for classes of one row among all the rows (``pooled``)."""
    single = [str(c) for c in np.flatnonzero(pooled == 1)]
    return (f"no stratified split can help: class{'es' * (len(single) > 1)} {', '.join(single)} "
            f"{'have' if len(single) > 1 else 'has'} one row in all, which sits in the training rows or the validation rows, "
            "not both; collect more rows of every class")


def validation_class_mismatch(ctx: DataContext) -> Issue | None:
    """Validation labels of one class while the training labels hold several, or holding a class
    the training labels lack, in a split chance would almost never draw (rows sorted by label).

    Datasets are judged by the first batches the checks read where those are a random draw of
    their rows (all of them, or a shuffling pipeline's; see
    :func:`~trainkit.checks.data_context.validation_rows_drawn` and
    :func:`~trainkit.checks.data_context.training_rows_stand_for_all`): under a random split the
    two samples are drawn alike from the pooled rows, as the chance assumes. Sorted rows cut into a
    validation dataset of 4 batches (all read, all class 1) got no word where the same arrays were
    told. Not a never-shuffled dataset's first few batches, even half of them: sorted by label,
    they hold its first class alone; nor those of a shuffle buffer smaller than its rows, which
    draws them from its first rows (:func:`~trainkit.checks.data_sampling.draws_rows`).
    """
    if not (training_rows_stand_for_all(ctx) and validation_rows_drawn(ctx)):
        return None
    for t in ctx.targets:
        issue = _mismatch(t, ctx.split_at is not None, ctx.where, ctx.val_where, every_row=validation_rows_all(ctx))
        if issue is not None:
            return issue
    return None


def _mismatch(t: Target, split: bool, where: str = "", val_where: str = "", *, every_row: bool = True) -> Issue | None:
    """:func:`validation_class_mismatch` for one target (``split``: ``validation_split`` held the rows out;
    ``where``, ``val_where``: the sampled batches the training and validation labels are, ``""`` for arrays;
    ``every_row``: the validation labels are all of them). Its caller judges only samples that are
    random draws: a shuffle buffer smaller than a training dataset sorted by label draws its first
    batches from its first rows, and 2,000 rows of 3 classes in .shuffle(100) were told "hold class
    2, which no training row in the first 8 batches holds", beside ~950 rows of class 2 past them."""
    if t.task == "multilabel":
        return _multilabel_mismatch(t, split, where, val_where)
    if t.task not in ("binary", "multiclass") or t.loss.kind not in CLASSIFICATION_LOSSES or t.y is None or t.y_val is None:
        return None
    train_ids, val_ids = class_ids(t, t.y), class_ids(t, t.y_val)
    if train_ids is None or val_ids is None or not train_ids.size or not val_ids.size or min(train_ids.min(), val_ids.min()) < 0:
        return None
    k = int(max(train_ids.max(), val_ids.max())) + 1
    train_counts, val_counts = np.bincount(train_ids, minlength=k), np.bincount(val_ids, minlength=k)
    train_classes, val_classes = np.flatnonzero(train_counts), np.flatnonzero(val_counts)
    if train_classes.size < 2:  # one training class is single-class's error
        return None
    one_class, whole_class = _split_chance(train_counts, val_counts)
    unseen = np.setdiff1d(val_classes, train_classes)
    val_name, n_val = validation_name(t.name), int(val_counts.sum())
    if val_classes.size == 1:
        only, rows = int(val_classes[0]), "the only row is" if n_val == 1 else f"all {n_val} rows are"
        found = (f"The validation labels {val_name}{val_where} hold one class only: {rows} class {only}, while the training labels{where} hold "
                 f"{train_classes.size} ({_counts_text(train_counts)}). val_loss and val_accuracy measure that class alone, and "
                 "metrics that need both kinds of rows (AUC, precision, recall) read 0 whatever the model does")
        if not every_row and one_class >= UNLIKELY_SPLIT:
            # A shuffled validation dataset's first batches, one class by chance (a 2% class in
            # 256 rows of 2,000): the rows past them may hold the others, and holding out more
            # rows is no advice for a sample. (A shuffle buffer smaller than its rows never gets
            # here: its first batches are no random draw, see draws_rows.)
            return None
        if one_class >= UNLIKELY_SPLIT:  # chance can do it: too few rows held out for the rarer classes
            stratified = _stratified_split(train_counts + val_counts)
            return Issue(
                f"{found}. A random split of these rows does this with a chance of {one_class:.1g}: too few rows are held out "
                "for the rarer classes.",
                "Hold out more rows (a larger validation_split; training.validation_split in a recipe, or more rows: "
                "data.rows for a generated set)"
                + (f", or split with the classes kept in proportion ({stratified}) and pass validation_data."
                   if stratified else f"; {_single_row_classes(train_counts + val_counts)}."),
                {"train_counts": [int(c) for c in train_counts], "val_counts": [int(c) for c in val_counts], "chance": float(one_class)},
                t.output.layer if t.output else None)
        chance = one_class
    elif unseen.size and whole_class < UNLIKELY_SPLIT:
        names = ", ".join(str(int(c)) for c in unseen)
        found = (f"The validation labels {val_name}{val_where} hold class{'es' * (unseen.size > 1)} {names} "
                 f"({_counts_text(np.where(np.isin(np.arange(k), unseen), val_counts, 0))} of {n_val} rows), which no "
                 f"training row{where} holds ({_counts_text(train_counts)}): the model is never taught "
                 f"{'them' if unseen.size > 1 else 'it'}, so val_loss measures what it cannot learn")
        chance = whole_class
    else:
        return None
    # validation_data the caller split: "fit(validation_split=...) holds out the LAST rows" named
    # an argument the fit never had.
    how = ("fit(validation_split=...) holds out the LAST rows, before any shuffling" if split else
           "the validation rows were cut from rows in label order")
    stratified = _stratified_split(train_counts + val_counts)
    return Issue(
        f"{found}. Drawn at random from these rows, a validation split like this happens with a chance of "
        f"{chance:.1g}: the rows look sorted by label, and {how}.",
        f"Shuffle x and y together before {'fit' if split else 'splitting them'} (p = np.random.default_rng(0).permutation(len(x)); "
        "x, y = x[p], y[p])" + (f", or split with {stratified} and pass validation_data." if stratified
                                else f"; {_single_row_classes(train_counts + val_counts)}."),
        {"train_counts": [int(c) for c in train_counts], "val_counts": [int(c) for c in val_counts], "chance": float(chance)},
        t.output.layer if t.output else None)


def _multilabel_mismatch(t: Target, split: bool, where: str = "", val_where: str = "") -> Issue | None:
    """Label columns of a multilabel target whose 1s (or 0s) only the validation rows hold.

    A label never positive in the training rows (a split of rows sorted by that label) is never
    taught, and val_loss measures it all the same: 256 training rows without one 1 in a column
    the 64 validation rows held at 30% got no word. Each column is judged as a binary label, its
    chance taken over all the columns (a rare label's one 1 held out by chance is no mistake).
    """
    if t.loss.kind != "binary" or t.y is None or t.y_val is None or len(t.y) == 0 or len(t.y_val) == 0:
        return None
    y, v = t.y.reshape(len(t.y), -1), t.y_val.reshape(len(t.y_val), -1)
    if y.shape[1] != v.shape[1] or y.shape[1] < 2 or not (np.isin(y, (0, 1)).all() and np.isin(v, (0, 1)).all()):
        return None
    n_val, total, columns = len(v), len(v) + len(y), y.shape[1]
    unseen: list[tuple[int, int, int, float]] = []  # (column, value, validation rows, chance)
    for value in (1, 0):
        train_has, val_count = (y == value).any(axis=0), (v == value).sum(axis=0)
        for c in np.flatnonzero(~train_has & (val_count > 0)):
            chance = min(1.0, columns * _all_drawn(n_val, int(val_count[c]), total))
            if chance < UNLIKELY_SPLIT:
                unseen.append((int(c), value, int(val_count[c]), chance))
    if not unseen:
        return None
    listing = ", ".join(f"label {c}: {value} in {count} of {n_val} rows" for c, value, count, _ in unseen[:5])
    more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
    how = ("fit(validation_split=...) holds out the LAST rows, before any shuffling" if split else
           "the validation rows were cut from rows in label order")
    chance = max(c for *_, c in unseen)
    return Issue(
        f"The validation labels {validation_name(t.name)}{val_where} hold values of label columns that no training row{where} holds ({listing}{more}): "
        "the model is never taught them, so val_loss measures what it cannot learn. Drawn at random from these rows, a "
        f"validation split like this happens with a chance of {chance:.1g}: the rows look sorted by label, and {how}.",
        f"Shuffle x and y together before {'fit' if split else 'splitting them'} (p = np.random.default_rng(0).permutation(len(x)); "
        "x, y = x[p], y[p]), so that every label's 1s and 0s fall on both sides of the split.",
        {"columns": [c for c, *_ in unseen], "values": [value for _, value, *_ in unseen],
         "val_counts": [count for *_, count, _ in unseen], "chance": float(chance)},
        t.output.layer if t.output else None)


#: A validation feature whose spread (interquartile range) is this many times the training one's,
#: or this many training spreads away from its centre, is on another scale. A random split of the
#: same rows gives ratios near 1 (a few dozen rows: within 2x); a scaler applied to the training
#: rows only gives ~50-1000x.
SCALE_MISMATCH = 10.0
#: The same for a dataset's first batches, which are no random sample of its rows: a validation
#: pipeline in file order shows its first rows (a trend, a sort), so only a gap no order of rows of
#: one scale makes counts. x_val left raw beside a standardised x gave 57x and a median 235
#: training spreads off, images in 0..255 beside 0..1 255x.
DATASET_SCALE_MISMATCH = 50.0

#: Validation targets fewer than this are not judged by :func:`validation_target_range`.
_RANGE_MIN_ROWS = 5


def validation_target_range(ctx: DataContext) -> Issue | None:
    """Regression validation targets that all lie above (or all below) every training target.

    Rows sorted by target before ``fit(validation_split=...)``, which holds out the last rows:
    sorted diabetes validated on its top 20% of targets (val_loss 2.8 against a training loss of
    0.37, standardised) and got no finding at all. A random split does this with a chance of
    1/C(rows, validation rows): never, in practice, from 5 validation rows of 20 on.

    Datasets are judged by the first batches the checks read (said so): a validation dataset's,
    beside a training dataset's where those stand for its rows (see
    :func:`~trainkit.checks.data_context.training_rows_stand_for_all`); under a random split both
    are random draws of the pooled rows, as the chance assumes. Sorted rows cut into a shuffled
    training dataset and a validation dataset got no word where the same arrays were told.
    """
    if not (training_rows_stand_for_all(ctx) and validation_rows_stand_for_all(ctx)):
        # A never-shuffled training dataset's first batches are its first rows: sorted by target,
        # its lowest, which a random validation set lies above nearly whole. A never-shuffled
        # validation dataset's first few alike: in time order, its first period.
        return None
    sampled = bool(ctx.where or ctx.val_where)
    for t in ctx.targets:
        if t.task != "regression" or t.y is None or t.y_val is None or not (is_numeric(t.y) and is_numeric(t.y_val)):
            continue
        y, v = t.y.reshape(len(t.y), -1), t.y_val.reshape(len(t.y_val), -1)
        if y.shape[1] != 1 or v.shape[1] != 1 or len(y) < _RANGE_MIN_ROWS or len(v) < _RANGE_MIN_ROWS:
            continue
        y, v = y[:, 0].astype(np.float64), v[:, 0].astype(np.float64)
        if not (np.isfinite(y).all() and np.isfinite(v).all()) or y.min() == y.max():
            continue
        side = "above" if v.min() >= y.max() else "below" if v.max() <= y.min() else None
        if side is None:
            continue
        gap = v.min() - y.max() if side == "above" else y.min() - v.max()
        if gap > y.max() - y.min() and _scale_issue(t.y, t.y_val, t.name, None, "targets", ctx.sample_rows, sampled=sampled) is not None:
            # validation-scale-mismatch's case: y_val left raw beside standardised y (7440..12560
            # against -1.8..1.8) was told "the rows look sorted by target: shuffle x and y", when a
            # scaler applied to the training targets only is the cause. Sorted rows (or a series
            # split by time) continue the training range; these lie a whole range beyond it.
            continue
        # The chance that a random split draws every validation row among the pooled rows at or
        # beyond the training range's end (both sides: either would be reported). Counted with the
        # ties: count targets of 94% zeros put 20 validation zeros "below" training's 0..3 at 6 of
        # 20 random splits, told a chance of 4e-21 (1/C(rows, validation rows), distinct values').
        edge = y.max() if side == "above" else y.min()
        pooled = np.concatenate([y, v])
        beyond = int(np.sum(pooled >= edge)) if side == "above" else int(np.sum(pooled <= edge))
        chance = min(1.0, 2 * math.exp(_log_choose(beyond, len(v)) - _log_choose(len(pooled), len(v))))
        if chance >= UNLIKELY_SPLIT:
            continue
        # validation_data the caller split: validation_split, an argument the fit never had, held
        # out nothing, and shuffling before fit would leave that split as it is.
        split = ctx.split_at is not None
        how = ("fit(validation_split=...) holds out the LAST rows, before any shuffling" if split else
               "the validation rows were cut from rows in target order")
        if gap > y.max() - y.min():
            # Sorted rows and a series split by time continue the training range; a gap wider
            # than that range is neither. y_val left raw beside y standardised with the training
            # rows' statistics (a rising series: 11.2..15.8 against -1.9..2.0, a shift under
            # validation-scale-mismatch's 10 spreads) was told "the rows look sorted: shuffle".
            return Issue(
                f"Every validation target {validation_name(t.name)}{ctx.val_where} ({len(v)} rows, {format_number(v.min())}..{format_number(v.max())}) lies "
                f"{side} every training target{ctx.where} ({format_number(y.min())}..{format_number(y.max())}), {format_number(gap)} beyond its end: "
                "more than the whole training range. Rows sorted by target, or a series split by time, continue the training range; a "
                "gap this wide says the validation targets were transformed unlike the training ones (a scaler fitted and applied to "
                "the training rows only, another unit) or come from another period or source, so val_loss measures that gap.",
                "Transform the validation (and test) targets and inputs exactly as the training ones, with the training rows' "
                "statistics ((y_val - y_mean) / y_std, scaler.transform(x_val)), once each; if they already are, check where the "
                "validation rows come from.",
                {"side": side, "train_range": [float(y.min()), float(y.max())], "val_range": [float(v.min()), float(v.max())],
                 "chance": chance, "gap": float(gap), **({"sampled": True} if sampled else {})},
                t.output.layer if t.output else None)
        return Issue(
            f"Every validation target {validation_name(t.name)}{ctx.val_where} ({len(v)} rows, {format_number(v.min())}..{format_number(v.max())}) lies "
            f"{side} every training target{ctx.where} ({format_number(y.min())}..{format_number(y.max())}): a random split of these rows does "
            f"this with a chance of {chance:.1g}. The rows look sorted by target, and {how}: the model is validated only on values it "
            "never trained on, so val_loss stays high whatever it learns. (Rows in time order with a trend do this too; then "
            "val_loss measures extrapolation.)",
            f"Shuffle x and y together before {'fit' if split else 'splitting them'} (p = np.random.default_rng(0).permutation(len(x)); "
            "x, y = x[p], y[p]), or pass validation_data drawn at random from the rows; for a time series split by time, keep the "
            "split and read val_loss as extrapolation.",
            {"side": side, "train_range": [float(y.min()), float(y.max())], "val_range": [float(v.min()), float(v.max())], "chance": chance,
             **({"sampled": True} if sampled else {})},
            t.output.layer if t.output else None)
    return None



def validation_scale_mismatch(ctx: DataContext) -> Issue | None:
    """Validation inputs or regression targets on another scale than the training ones.

    A scaler fitted and applied to the training rows only (x_val left raw, or scaled twice), or
    validation targets in another unit (grams against kilograms): the model meets values it never
    saw, and val_loss measures the unit, not generalisation. Standardised training inputs with raw
    validation inputs (mean 300, std 50) were told by loss-at-chance that the labels looked random;
    validation targets x1000 got no finding at all (val_loss 8.7e5 against 0.024).

    Datasets are judged by the first batches the checks read, at :data:`DATASET_SCALE_MISMATCH`:
    a validation dataset of raw inputs beside a standardised training dataset was told by
    loss-at-chance (val_loss 511, 737x chance) that the model memorised random labels. Not when
    the training dataset never shuffles: its first batches show its first rows, not its scale.
    """
    if ctx.where and ctx.dataset_drawn is not True:
        return None
    sampled = bool(ctx.where or ctx.val_where)
    ids = {i for i, *_ in ctx.embeddings}
    inputs = None
    for i, (train, val) in enumerate(zip(ctx.xs, ctx.x_val or (), strict=False)):
        if i in ids:
            continue  # ids, not measurements
        # A channels-first model's channels are axis 1: the last axis, an image's columns, was
        # read as its features (0-1 training images beside 0-255 validation ones: "feature 29").
        train, val = channels_last(ctx, i, train), channels_last(ctx, i, val)
        # An image's last axis holds its channels: "in 3 of 3 columns (feature 1: ...)" named them as a table's.
        inputs = _scale_issue(train, val, input_label("x", i, len(ctx.xs), ctx.input_keys), ctx.feature_names if len(ctx.xs) == 1 else None,
                              "inputs", ctx.sample_rows, sampled=sampled, channels=reads_image(ctx, i, train))
        if inputs is not None:
            break
    for t in ctx.targets:
        if t.task == "regression" and t.y is not None and t.y_val is not None:
            issue = _scale_issue(t.y, t.y_val, t.name, None, "targets", ctx.sample_rows, sampled=sampled)
            if issue is not None and inputs is not None:
                # Both off (x_val and y_val left raw): the targets were left unsaid, and with them
                # the advice to transform y_val too.
                e = issue.evidence
                return Issue(
                    f"{inputs.message} So are the validation targets {validation_name(t.name)} (training median "
                    f"{format_number(e['train_median'])}, spread {format_number(e['train_iqr'])}; validation median "
                    f"{format_number(e['val_median'])}, spread {format_number(e['val_iqr'])}).",
                    f"{inputs.advice} Do the same for the targets: the same unit, and the same scaling with the training "
                    "rows' statistics ((y_val - y_mean) / y_std).",
                    {**inputs.evidence, "targets": {k: e[k] for k in ("train_median", "train_iqr", "val_median", "val_iqr")}})
            if issue is not None:
                return Issue(issue.message, issue.advice, issue.evidence, t.output.layer if t.output else None)
    return inputs


def _scale_issue(train: np.ndarray, val: np.ndarray, name: str, names: Any, what: str, rows: int, *, sampled: bool = False,
                 channels: bool = False) -> Issue | None:
    """:func:`validation_scale_mismatch` for one array and its validation twin (features on the last axis);
    ``sampled``: either is a dataset's first batches (see :data:`DATASET_SCALE_MISMATCH`); ``channels``:
    an image's, told as its channels."""
    if not (is_numeric(train) and is_numeric(val)) or train.shape[1:] != val.shape[1:] or len(train) < 20 or len(val) < 20:
        return None
    factor = DATASET_SCALE_MISMATCH if sampled else SCALE_MISMATCH
    width = train.shape[-1] if train.ndim > 1 else 1
    t = strided_rows(train, row_budget(train, rows)).reshape(-1, width).astype(np.float64)
    v = strided_rows(val, row_budget(val, rows)).reshape(-1, width).astype(np.float64)
    tq, vq = np.percentile(t, [25, 50, 75], axis=0), np.percentile(v, [25, 50, 75], axis=0)
    t_iqr, v_iqr = tq[2] - tq[0], vq[2] - vq[0]
    # Features that spread in both: a mostly-constant one (counts, flags) has no spread to compare.
    # Nor one whose median value holds half the rows or more (zero-inflated amounts): its quartile
    # falls between that value and the rest, and 20 validation rows of a random split drew spreads
    # 0.0004 against 0.008, or 0.69 against 0.03 (3 of 30 random splits of 8 such columns fired).
    tied = np.maximum((t == tq[1]).mean(axis=0), (v == vq[1]).mean(axis=0))
    ok = (t_iqr > 0) & (v_iqr > 0) & np.isfinite(t_iqr) & np.isfinite(v_iqr) & (tied < 0.5)
    if not ok.any():
        return None
    ratio = np.where(ok, v_iqr / np.where(ok, t_iqr, 1.0), 1.0)
    shift = np.where(ok, np.abs(vq[1] - tq[1]) / np.where(ok, t_iqr, 1.0), 0.0)
    # A dataset's first rows in the order of one column (sorted by it, or by the target) spread
    # far less than all of its rows: a narrower validation spread is read there only from values
    # pooled over positions (pixels, time steps), which no order of rows narrows.
    narrow = ratio <= 1 / factor if not sampled or train.ndim > 2 else np.zeros_like(ok)
    off = ok & ((ratio >= factor) | narrow | (shift >= factor))
    # Most of the features that spread: one shifted column can be a real change between the sets.
    if 2 * int(off.sum()) < int(ok.sum()):
        return None
    j = int(np.argmax(np.where(off, np.maximum(ratio, 1 / np.maximum(ratio, 1e-300)) + shift, -1.0)))
    val_name = validation_name(name) if name.startswith("y") else name.replace("x", "x_val", 1)
    column = f"{f'channel {j}' if channels else feature_label(j, names)}: " if width > 1 else ""
    fix = ("fit the scaler on the training rows and apply the same transform to both (scaler.transform(x_val)), once each"
           if what == "inputs" else
           "the same unit, and the same scaling with the training rows' statistics ((y_val - y_mean) / y_std), once each")
    return Issue(
        f"The validation {what} {val_name} are on another scale than the training {what} {name}: in {int(off.sum())} of "
        f"{int(ok.sum())} {'channels' if channels else 'columns'}{' of the first batches' if sampled else ''} their spread (interquartile range) or centre differs {factor:g}x or more "
        f"({column}training median {format_number(float(tq[1][j]))}, spread {format_number(float(t_iqr[j]))}; validation "
        f"median {format_number(float(vq[1][j]))}, spread {format_number(float(v_iqr[j]))}). A random split of the same rows "
        "gives ratios near 1: the model is validated on values it never saw, and val_loss measures the scale, not "
        "generalisation. Typical causes: a scaler applied to the training rows only (or twice), another unit, or rows in "
        "time order whose values grew past the training ones.",
        f"Transform the validation (and test) {what} exactly as the training {what}: {fix}. For values that grow over "
        "time, model a stable quantity instead (logarithms, changes from the previous row).",
        {"columns_off": int(off.sum()), "columns_compared": int(ok.sum()), "column": j, "train_median": float(tq[1][j]),
         "train_iqr": float(t_iqr[j]), "val_median": float(vq[1][j]), "val_iqr": float(v_iqr[j])})


def validation_augmented(ctx: DataContext) -> Issue | None:
    """A validation dataset whose map functions draw random numbers: augmentation or noise applied
    to the validation rows too.

    One ``.map(augment)`` shared by both splits (or a dataset split with ``take``/``skip`` after it)
    validates on flipped, cropped or noised rows: val_loss is higher than the model's loss on the
    real rows and changes with the draws, and early stopping and checkpoints watch that noise.
    Noise of std 1.5 mapped over both splits of a standardised binary task got no finding at all.
    """
    if not ctx.val_random_ops:
        return None
    ops = ", ".join(ctx.val_random_ops[:4])
    return Issue(
        f"The validation dataset's pipeline draws random numbers in a map function ({ops}): augmentation or noise applied to "
        "the validation rows too (a .map(augment) shared by both splits, a dataset split after it, or a keras.layers.Random* "
        "layer called in the pipeline, where it augments). val_loss then measures augmented rows, reads higher than the "
        "model's loss on the real ones and changes with the draws from epoch to epoch, and early stopping and checkpoints "
        "follow that noise.",
        "Map the augmentation over the training dataset alone (train_ds = train_ds.map(augment)) and build the validation "
        "dataset with the deterministic steps only (decode, resize, scale), or put the random layers in the model, where "
        "they act in training only.",
        {"random_ops": list(ctx.val_random_ops)})
