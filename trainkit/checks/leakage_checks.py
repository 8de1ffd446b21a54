"""Rules on what the inputs give away: validation rows that repeat training rows
(``train-validation-overlap``), a feature that is the label (``label-leakage``) and a feature
that alone separates the classes (``one-feature-separates``).

Apart from the other rules: these compare rows with rows and features with the label, on strided
samples of the rows (the features' sample drawn once for both label rules).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from trainkit.checks.compatibility import Issue
from trainkit.checks.data_context import (
    DataContext,
    Target,
    channels_first,
    channels_last,
    class_ids,
    feature_label,
    input_label,
    is_numeric,
    row_budget,
    strided_rows,
)
from trainkit.checks.row_checks import (
    _label_sorted,
    _ordered_labels,
    _position_class_ids,
    _predicts_per_position,
)

#: Train rows x features hashed fully for the overlap check before it samples.
_HASH_VALUES = 20_000_000
#: Rows and values read by the leakage check.
_LEAK_ROWS, _LEAK_VALUES, _LEAK_MAX_FEATURES = 20_000, 2_000_000, 4096
#: Columns of a regression target (a forecast's horizon) each compared with the features.
_LEAK_MAX_TARGET_COLUMNS = 64
OVERLAP_SHARE = 0.01
#: Training texts coded for the overlap check at most (a Python dict each: ~0.35 s for 1M).
_TEXT_HASH_ROWS = 1_000_000
LEAK_CORRELATION = 0.9999
#: ``1 - correlation`` under which a feature is the target itself (float round-off: an exact copy
#: in float32, 3 * y + 1, is ~1e-14 off), whatever the other features are.
_EXACT_COPY_GAP = 1e-9
#: A feature another feature is at most this many times as far from (in ``1 - correlation``) as
#: from the target is a step of a smooth series, not a copy (a window's neighbouring values are as
#: close to each other as its last one is to the next: the ratio is ~1).
_NEIGHBOUR_FACTOR = 2.0
#: A feature whose classes lie in separate intervals at least this many within-class standard
#: deviations apart separates them alone (a noisy copy of the label, y + 0.1 N(0, 1), measures
#: ~3; a feature an honest rule thresholds, y = x0 > 0, has its classes touching).
SEPARATION_GAP = 1.0
#: Share of a feature's variance its class means explain (the correlation ratio) from which the
#: separation is checked; a label copy with noise at a tenth of the classes' spacing explains ~99%.
_SEPARATION_SCREEN_SHARE = 0.9
_SEPARATION_SCREEN_FEATURES = 8


#: Values of a block :func:`_row_hashes` projects at a time (512 KB in float64).
_HASH_BLOCK_VALUES = 1 << 16


def _row_hashes(a: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One float64 per row: a random projection, equal for identical rows (chunked)."""
    flat = a.reshape(len(a), -1)
    out = np.empty(len(flat), dtype=np.float64)
    step = max(1, _HASH_BLOCK_VALUES // max(1, flat.shape[1]))
    # One small float64 buffer the blocks are projected in, in place: a float64 copy of 4M values
    # and their products beside it (64 MB) left the cache, and 1M rows of 20 took 0.18 s, not 0.10.
    buffer = np.empty((min(step, len(flat)), flat.shape[1]), dtype=np.float64)
    for start in range(0, len(flat), step):
        rows = flat[start:start + step]
        block = buffer[:len(rows)]
        block[...] = rows
        block *= weights
        # A row-wise sum, not `@`: a BLAS matrix-vector product sums a row in an order that
        # depends on where it sits in the block, so identical rows hashed ~1e-12 apart and went
        # uncounted (3 of 9 images shared by two image_dataset_from_directory subsets).
        block.sum(axis=1, out=out[start:start + len(rows)])
    return out


def train_validation_overlap(ctx: DataContext) -> Issue | None:
    """Identical rows in the training and validation inputs (a row of a model with several
    inputs is its values in all of them), or validation windows that are training windows
    shifted by a step or two (:func:`_shifted_windows`)."""
    if not ctx.x_val or len(ctx.xs) != len(ctx.x_val):
        return None
    return _shared_files(ctx) or _identical_rows(ctx) or _shifted_windows(ctx)


#: How the advice names the subsets of one ``*_dataset_from_directory`` call made twice.
_SAME_SEED = ("pass the same seed to both keras.utils.image_dataset_from_directory calls (validation_split=0.2, "
              "subset='training', seed=123 and subset='validation', seed=123), or make both at once with subset='both'")


def _shared_files(ctx: DataContext) -> Issue | None:
    """Validation files that are training files too, where both datasets name the files they read
    (``file_paths``, set by ``keras.utils.image_dataset_from_directory``): exact, from every file,
    however the images are augmented, and without reading a batch.

    Each call shuffles the file list with its own ``seed`` before it cuts ``validation_split`` off,
    so ``subset='training'`` and ``subset='validation'`` made with different seeds share files
    (9 of 15 validation images for seeds 1 and 2).
    """
    train, val = ctx.file_paths
    if not train or not val:
        return None
    known = set(train)
    shared = [p for p in val if p in known]
    if not shared:
        return None
    share = len(shared) / len(val)
    return Issue(
        f"{len(shared)} of the {len(val)} validation files ({share:.0%}) are training files too (the first: "
        f"{shared[0]!r}): subsets of one directory made with different seeds (each call shuffles the files with its own "
        "seed before it cuts the validation split off), or the same files read twice. Validation then measures "
        "memory, not generalisation, and early stopping and model choice are biased.",
        _SAME_SEED[0].upper() + _SAME_SEED[1:] + ".",
        {"overlap_share": share, "files_shared": len(shared), "files_checked": len(val)})


#: Shifts (in steps) at which :func:`_shifted_windows` compares windows, and the fewest steps a
#: window needs (the shifted windows then still share 3 of them).
_WINDOW_SHIFTS, _WINDOW_MIN_STEPS = 3, 6
#: Share of the validation windows (and fewest of them) that overlap a training window for a
#: random split: a split by time overlaps at its boundary only (one or two windows).
_SHIFTED_SHARE, _SHIFTED_MIN_ROWS = 0.1, 3
#: Training values and validation rows the shifted windows are looked for in: a tenth of the
#: identical rows' budget, as six hashes are made of them (20,000 rows of 784 pixels, which no
#: window is, took 580 ms at every fit with the full budget). The share found is scaled to the
#: training rows not read.
_WINDOW_HASH_VALUES, _WINDOW_VAL_ROWS = 2_000_000, 2000


def _shifted_windows(ctx: DataContext) -> Issue | None:
    """Validation windows (rows of ``steps`` continuous values, ``(rows, steps)`` or ``(rows,
    steps, features)``) that are training windows shifted by 1 to :data:`_WINDOW_SHIFTS` steps.

    Overlapping windows of a series split at random, after windowing: no row repeats, so the check
    of identical rows passed them, while each validation window shares all its steps but one with
    the training window before it, and its target sits inside the training window after it (sine
    windows split so: 78% of the validation windows). Validation then measures interpolation between
    training windows, not a forecast. A split by time overlaps at its boundary only.
    """
    if len(ctx.xs) != 1:
        return None
    train, val = ctx.xs[0], ctx.x_val[0]
    if (train.ndim not in (2, 3) or train.shape[1:] != val.shape[1:] or train.shape[1] < _WINDOW_MIN_STEPS
            or not (is_numeric(train) and is_numeric(val)) or len(val) < _SHIFTED_MIN_ROWS):
        return None
    steps, width = train.shape[1], int(np.prod(train.shape[1:]))
    train_rows = strided_rows(train, max(1, _WINDOW_HASH_VALUES // width))
    val_rows = strided_rows(val, min(_WINDOW_VAL_ROWS, row_budget(val, ctx.sample_rows)))
    if not _has_continuous_feature(train_rows.reshape(len(train_rows), -1)):
        return None  # ids and counts repeat runs of values by chance
    rng = np.random.default_rng(5)
    for shift_found in range(1, _WINDOW_SHIFTS + 1):
        weights = rng.standard_normal((steps - shift_found) * (width // steps))
        found = np.zeros(len(val_rows), bool)
        # A validation window after a training one (its first steps are the training one's last),
        # or before it.
        for head, tail in ((train_rows[:, shift_found:], val_rows[:, :-shift_found]),
                           (train_rows[:, :-shift_found], val_rows[:, shift_found:])):
            found |= np.isin(_row_hashes(tail, weights), _row_hashes(head, weights))
        hits = int(found.sum())
        if hits >= _SHIFTED_MIN_ROWS:
            break
    else:
        return None
    share = min(1.0, hits / len(val_rows) * (len(train) / len(train_rows)))
    if share < _SHIFTED_SHARE:
        return None
    return Issue(
        f"About {share:.0%} of the validation windows{ctx.where} ({hits} of {len(val_rows)} checked) are training windows "
        f"shifted by {shift_found} step{'s' * (shift_found > 1)}: they share {steps - shift_found} of their {steps} steps with a "
        "training window, and the value each one predicts mostly lies inside a training window. Overlapping windows of a series were split "
        "at random after windowing, so validation measures interpolation between training windows, not a forecast of "
        "steps the model never saw, and val_loss reads better than the model will do.",
        "Split the series by time before (or without shuffling after) making the windows: the first 80% of the steps for "
        "training and the rest for validation, a window's length apart (x[:n] and x[n + window:] of windows in time "
        "order, or keras.utils.timeseries_dataset_from_array with end_index and start_index); shuffle only the training "
        "windows.",
        {"overlap_share": share, "rows_found": hits, "rows_checked": len(val_rows), "shift": shift_found, "steps": steps})


def _identical_rows(ctx: DataContext) -> Issue | None:
    """:func:`train_validation_overlap`'s identical rows."""
    pairs = list(zip(ctx.xs, ctx.x_val, strict=True))
    comparable = [(is_numeric(t) and is_numeric(v)) or (_is_text(t) and _is_text(v)) for t, v in pairs]
    if not all(c and t.shape[1:] == v.shape[1:] for c, (t, v) in zip(comparable, pairs, strict=True)):
        return None
    train, val = ctx.xs[0], ctx.x_val[0]
    if not len(train) or not len(val):
        return None
    width = sum(int(np.prod(t.shape[1:])) for t in ctx.xs)
    weights = np.random.default_rng(4).standard_normal(width)
    train_budget = max(1, _HASH_VALUES // width)
    # The row budget of one input as wide as all of them together.
    val_budget = row_budget(np.empty((0, width)), ctx.sample_rows)
    texts = any(_is_text(t) for t in ctx.xs)
    if texts:  # every input's rows strided alike, so that a row stays one row across them
        train_budget = min(train_budget, _TEXT_HASH_ROWS)
    xs, x_val = _text_as_codes(ctx.xs, ctx.x_val, train_budget, val_budget) if texts else (ctx.xs, ctx.x_val)
    train_rows = _joined_rows(xs, train_budget)
    val_rows = _joined_rows(x_val, val_budget)
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
    # Not rows with a continuous feature, which never repeat by chance: there every repeat is a
    # copy, and copies made before the split (each row twice, then split 80/20) repeat inside the
    # training rows as often as across the split (40% and 80%), which made the check a coin toss
    # on the textbook oversampling leak (it fired at seed 0, 84% > 2 x 39.5%, not at seed 1).
    # The share of training rows equal to another training row: what a validation row drawn like
    # them matches by chance. Not the share of rows that are repeats (1 - unique / n), half of
    # that where repeats are rare (a pair is one repeat, two rows that have a twin): "2x" it was
    # what chance gives, and 4-token sequences of 6 ids got the warning at 8 of 20 seeds.
    dup_rate, copies, distinct, repeats = _chance_repeat_rate(h_train, _row_classes(ctx, len(train), train_budget))
    # Texts are no continuous feature however many differ: short ones ("great movie") repeat by chance.
    continuous = not texts and _has_continuous_feature(train_rows)
    if not continuous and (share <= 2.0 * dup_rate or not _beyond_chance(h_val[found], distinct, repeats, len(h_val))):
        return None
    first = int(np.argmax(found)) * max(1, math.ceil(len(val) / max(1, len(val_rows))))
    share = min(share, 1.0)
    return Issue(
        f"About {share:.1%} of the validation rows{ctx.val_where} also appear in the training inputs "
        f"({hits} of {len(h_val)} checked; the first at x_val row {first}), "
        + ("and rows with continuous features do not repeat by chance: they are copies. " if continuous else
           f"while only {dup_rate:.1%} of the training rows repeat another training row"
           + (f" (each training row's {copies} copies, an oversampling's, counted once). " if copies > 1 else ". "))
        + "Validation then measures memory, not generalisation, and early stopping and model choice are biased.",
        "Split before any augmentation or oversampling, and drop duplicates across the split, e.g. "
        "with np.unique(x, axis=0, return_index=True) before splitting"
        # Image datasets, mostly image_dataset_from_directory's subsets, whose file_paths a
        # .cache() or .map() left behind: np.unique was no advice for them.
        + (f"; for datasets made by image_dataset_from_directory, {_SAME_SEED}." if ctx.where and train.ndim == 4 else "."),
        {"overlap_share": share, "rows_found": hits, "rows_checked": len(h_val), "first_val_row": first,
         "train_duplicate_rate": dup_rate, **({"train_copies": copies} if copies > 1 else {})})


#: Distinct training rows of a class from which their counts' common divisor is read as copies.
_COPIES_MIN_ROWS = 20


def _row_classes(ctx: DataContext, rows: int, budget: int) -> np.ndarray | None:
    """The class of each training row :func:`_identical_rows` hashed (strided alike), from the first
    output with single-label classes of ``rows`` rows; ``None`` where none has."""
    for t in ctx.targets:
        if t.y is None or len(t.y) != rows:
            continue
        ids = class_ids(t, t.y) if t.task in ("binary", "multiclass") else None
        if ids is not None and ids.size and ids.min() >= 0:
            return strided_rows(ids, budget)
    return None


#: A match of validation and training rows chance explains less often than this is reported.
_UNLIKELY_MATCHES = 1e-2
#: Pairs of matching rows up to which the binomial tail is summed, not approximated.
_EXACT_PAIRS = 10_000


def _beyond_chance(hit_hashes: np.ndarray, distinct: np.ndarray, repeats: np.ndarray, val_rows: int) -> bool:
    """Whether validation rows match training rows more often than chance, measured on the training
    rows' own repeats (``distinct``: their distinct hashes, sorted; ``repeats``: each one's rows).

    Counted in pairs of equal rows: under a random split, a validation-training pair is as likely
    to be equal as a training-training one, so of all the equal pairs, the validation-training
    ones are a binomial draw at their share of the pairs; reported below :data:`_UNLIKELY_MATCHES`.
    "A binomial spread around the training repeat rate" took that rate as known: 160 training
    rows of 4 columns of 10 ids hold no repeat at most splits (rate 0), and 2 of 40 validation
    rows matching by chance were a warning at 3 of 40 seeds (2-7 matches, 8-12% of small discrete
    splits).
    """
    n_train = float(repeats.sum())
    if n_train < 2:
        return True  # one training row: no pair of its own to measure chance by
    val_pairs = float(repeats[np.searchsorted(distinct, hit_hashes)].sum())
    train_pairs = float((repeats * (repeats - 1)).sum() / 2)
    pairs = val_pairs + train_pairs
    share = val_rows * n_train / (val_rows * n_train + n_train * (n_train - 1) / 2)
    if pairs <= _EXACT_PAIRS:  # P(binomial(pairs, share) >= val_pairs), summed from its log terms
        k = np.arange(int(val_pairs), int(pairs) + 1, dtype=np.float64)
        first = (math.lgamma(pairs + 1) - math.lgamma(val_pairs + 1) - math.lgamma(pairs - val_pairs + 1)
                 + val_pairs * math.log(share) + (pairs - val_pairs) * math.log1p(-share))
        steps = np.log((pairs - k[:-1]) / (k[:-1] + 1)) + math.log(share) - math.log1p(-share)
        tail = float(np.exp(first + np.concatenate([[0.0], np.cumsum(steps)])).sum())
        return tail < _UNLIKELY_MATCHES
    mean, spread = pairs * share, math.sqrt(pairs * share * (1 - share))
    return (val_pairs - 0.5 - mean) / spread > 2.33  # the normal tail at 1e-2


def _chance_repeat_rate(h_train: np.ndarray, classes: np.ndarray | None) -> tuple[float, int, np.ndarray, np.ndarray]:
    """The share of training rows equal to another training row (what a validation row drawn like
    them matches by chance), each row's copies counted once; the most copies a row has; and the
    distinct training hashes (sorted) with each one's rows, copies counted once.

    Copies are read class by class (``classes``, one per row, or one class for all): where every
    distinct row of a class (20 at least) repeats a multiple of ``g`` times, as ``np.tile``,
    ``np.repeat`` or an oversampling of a minority class by ``g`` make them, each ``g`` are one row.
    Counted as they come, those copies read as chance: validation rows all copied from training
    rows 5x tiled matched 100% of them where 100% of the training rows repeated another, and got
    no word. Rows that coincide by nature (few values: 10 ids in 4 columns) keep counts of no
    common divisor, and their own repeats.
    """
    distinct, inverse, counts = np.unique(h_train, return_inverse=True, return_counts=True)
    if counts.max(initial=1) == 1:
        return 0.0, 1, distinct, counts
    repeated = counts[inverse] > 1
    per_class = np.bincount(classes) if classes is not None else np.array([len(h_train)])
    lone = np.bincount(classes[~repeated], minlength=len(per_class)) if classes is not None else np.array([np.count_nonzero(~repeated)])
    if np.all(lone[per_class > 0] > 0):  # every class holds a row that repeats no other: no copies (a second sort spared)
        return float(np.mean(repeated)), 1, distinct, counts
    if classes is None or classes.min() == classes.max():  # one class: its distinct rows as they are
        row_of, group_of = np.arange(len(counts)), np.zeros(len(counts), dtype=np.int64)
    else:  # each distinct row of each class (a row with two labels is one of each)
        width = int(classes.max()) + 1
        keys, counts = np.unique(inverse.astype(np.int64) * width + classes, return_counts=True)
        row_of, group_of = keys // width, keys % width
    copies = np.ones(len(counts), dtype=np.int64)
    for group in np.unique(group_of):
        members = group_of == group
        if np.count_nonzero(members) >= _COPIES_MIN_ROWS:
            copies[members] = np.gcd.reduce(counts[members])
    rows = counts // copies
    per_row = np.bincount(row_of, weights=rows)
    rate = float(rows[per_row[row_of] > 1].sum() / max(1, rows.sum()))
    return rate, int(copies.max()), distinct, per_row


def _is_text(a: np.ndarray) -> bool:
    """Whether ``a`` holds text (an input of dtype ``string``: str, bytes or objects holding them)."""
    return a.dtype.kind in "OUS"


def _text_key(text: object) -> Hashable:
    """``text`` as the str it codes: a ``tf.string`` tensor's bytes decoded; anything else an
    object array may hold (a list: unhashable, it raised a ``TypeError`` in ``check_data``) as a
    key equal for equal values only.

    Not their repr: numpy shortens an array of over 1000 values to its first and last three
    (``[0.1, 0.2, 0.3, ..., 0.7, 0.8, 0.9]``), so 20 validation rows of 2000 new values each were
    20 copies of the training rows whose ends they shared (train-validation-overlap).
    """
    if isinstance(text, str):
        return text
    if isinstance(text, bytes):
        return text.decode("utf-8", "replace")
    if isinstance(text, np.ndarray):
        if text.dtype.kind == "O":  # its bytes are pointers: its values, one by one
            return ("ndarray", text.shape, tuple(_text_key(item) for item in text.ravel().tolist()))
        return ("ndarray", text.dtype.str, text.shape, text.tobytes())
    if isinstance(text, list | tuple):
        return (type(text).__name__, tuple(_text_key(item) for item in text))
    return ("repr", repr(text))  # tagged: the number 1 is not the text "1"


def _text_as_codes(xs: Sequence[np.ndarray], x_val: Sequence[np.ndarray], train_rows: int,
                   val_rows: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The training and validation inputs as :func:`_identical_rows` hashes them, their texts as
    whole-number codes, equal for equal texts on both sides (the rows it reads, strided alike).

    Texts were no numbers, so the check skipped them: a validation set of the training texts
    themselves (all 80 rows) trained without a word through a TextVectorization model."""
    train = [strided_rows(t, train_rows) for t in xs]
    val = [strided_rows(v, val_rows) for v in x_val]
    for i, (t, v) in enumerate(zip(train, val, strict=True)):
        if not _is_text(t):
            continue
        # A dict of each text as str (a tf.string tensor's bytes and numpy's str are the same
        # texts): 0.07 s for 200k, where np.unique took 0.16 s (0.14 s on their bytes).
        seen: dict[Hashable, int] = {}
        texts = [*t.ravel().tolist(), *v.ravel().tolist()]
        codes = np.fromiter((seen.setdefault(_text_key(text), len(seen)) for text in texts), dtype=np.int64, count=len(texts))
        train[i], val[i] = codes[:t.size].reshape(t.shape), codes[t.size:].reshape(v.shape)
    return train, val


def _joined_rows(arrays: Sequence[np.ndarray], rows: int) -> np.ndarray:
    """The same strided rows of each input, side by side as one row each (one input's as they are):
    two inputs each repeating rows of their own repeat no row of the model unless both do at once."""
    if len(arrays) == 1:
        return strided_rows(arrays[0], rows)
    return np.concatenate([strided_rows(a, rows).reshape(-1, int(np.prod(a.shape[1:]))).astype(np.float64) for a in arrays], axis=1)


#: Columns read to tell whether rows have a continuous feature (a strided choice of wide rows').
_CONTINUOUS_COLUMNS = 256


def _has_continuous_feature(rows: np.ndarray) -> bool:
    """Whether some feature takes a different value in at least half of the distinct rows.

    Counted over distinct rows, so that copies do not hide it. Such a feature makes two equal rows
    a copy, not a coincidence; 20 distinct rows at least, to be a measure. A feature whose values
    sit on a grid (whole numbers, or whole numbers standardised: every gap a whole multiple of the
    smallest) counts only where the rows are mostly distinct (a quarter of them at least): one
    column of 50 category ids over 640 rows takes a different value in every distinct row, since
    it alone makes the rows, and repeats by chance (every validation row matched, "copies").
    """
    flat = rows.reshape(len(rows), -1)
    if flat.shape[1] == 0:
        return False
    columns = flat[:, :: max(1, flat.shape[1] // _CONTINUOUS_COLUMNS)]
    if len(columns) < 20:
        return False  # fewer than 20 distinct rows
    # A column takes the same values in the distinct rows as in all of them, and there are at least
    # as many distinct rows as it has values: one with 20 values or more, in half the rows, passes
    # without the distinct rows (sorting the rows whole cost 40-130 ms of a fit's checks).
    values = []
    for v in _column_values(columns):
        if v.size >= 20 and v.size * 2 >= len(columns):
            return True
        values.append(v)
    distinct = _distinct_rows(columns)
    if distinct < 20:
        return False
    mostly_distinct = distinct * 4 >= len(flat)
    return any(v.size * 2 >= distinct and (mostly_distinct or not _on_a_grid(v)) for v in values)


def _column_values(columns: np.ndarray) -> Iterator[np.ndarray]:
    """Each column's sorted distinct values, one column at a time (the first may settle it);
    integers' from one sort of them all (100 columns of ids: 50 ms, one np.unique each 100 ms)."""
    if columns.dtype.kind not in "iu":
        for j in range(columns.shape[1]):
            yield np.unique(columns[:, j])
        return
    ordered = np.sort(columns, axis=0)
    changes = np.diff(ordered, axis=0) != 0
    for j in range(columns.shape[1]):
        yield ordered[np.concatenate([[True], changes[:, j]]), j]


def _distinct_rows(rows: np.ndarray) -> int:
    """How many distinct rows a 2-D array has: integers compared as bytes (equal bytes, equal
    numbers; 3x faster), floats as numbers (0.0 and -0.0 differ in their bytes)."""
    if rows.dtype.kind not in "biu":
        return len(np.unique(rows, axis=0))
    packed = np.ascontiguousarray(rows)
    return len(np.unique(packed.view(np.dtype((np.void, packed.dtype.itemsize * packed.shape[1]))).ravel()))


def _on_a_grid(values: np.ndarray) -> bool:
    """Whether sorted distinct values are spaced by whole multiples of their smallest gap (ids,
    counts, and those standardised); 20 continuous values pass by chance about never."""
    gaps = np.diff(values.astype(np.float64))
    step = gaps.min() if gaps.size else 0.0
    if step <= 0:
        return False
    multiples = gaps / step
    return bool(np.all(np.abs(multiples - np.round(multiples)) < 1e-2))


class _Columns(NamedTuple):
    """Which input a sample's features are: its position among the model's inputs, how messages
    name it (``x``, ``x[2]``, ``x['feat']``) and its columns' names (a recipe's csv header)."""

    index: int
    x: str
    names: Sequence[str] | None


class _LeakSample(NamedTuple):
    """Strided rows of one input, the same rows of one output's targets, and that output."""

    xs: np.ndarray
    y: np.ndarray
    target: Target
    columns: _Columns


def _leak_samples(ctx: DataContext) -> list[_LeakSample]:
    """The samples the leakage checks read, one per 2-D numeric input and output with targets: a
    strided sample of the input's rows and the output's targets; none for inputs of another form
    (drawn once per context). Every output's: a model with a second output left the label leaking
    into its inputs unchecked; and every input's: a model with two inputs left a label copied
    into one of them unchecked."""
    if "leak_samples" not in ctx.memo:
        ctx.memo["leak_samples"] = _draw_leak_samples(ctx)
    return ctx.memo["leak_samples"]


def _draw_leak_samples(ctx: DataContext) -> list[_LeakSample]:
    inputs = [(i, x) for i, x in enumerate(ctx.xs)
              if x.ndim == 2 and is_numeric(x) and x.shape[1] <= _LEAK_MAX_FEATURES and len(x) >= 20]
    if not inputs:
        return []
    # One row budget for all the inputs, the same rows of each (their rows pair up with y's).
    rows = max(200, min(_LEAK_ROWS, _LEAK_VALUES // max(1, sum(x.shape[1] for _, x in inputs))))
    samples = []
    for i, x in inputs:
        xs = strided_rows(x, rows).astype(np.float64)
        if not np.isfinite(xs).all():
            continue
        columns = _Columns(i, input_label("x", i, len(ctx.xs), ctx.input_keys), ctx.feature_names if len(ctx.xs) == 1 else None)
        for t in ctx.targets:
            y = strided_rows(t.y, rows) if t.y is not None and len(t.y) == len(x) else None
            if y is not None and is_numeric(y):
                samples.append(_LeakSample(xs, y, t, columns))
    return samples


def _label_text(ctx: DataContext, t: Target, label: str) -> str:
    """``label`` ("the class label"), naming the output's targets when the model has several."""
    return label if len(ctx.targets) == 1 else f"{label} {t.name}"


def _sampled_class_ids(sample: _LeakSample) -> np.ndarray | None:
    """The sampled labels as class ids, for a classification target with 2+ classes in the sample."""
    if sample[2].task not in ("binary", "multiclass"):
        return None
    ids = class_ids(sample[2], sample[1])
    return ids if ids is not None and np.unique(ids).size >= 2 else None


def _few_values(rows: int) -> int:
    """The most distinct values a feature of ``rows`` sampled rows has to count as discrete."""
    return max(2, min(32, rows // 20))


def label_leakage(ctx: DataContext) -> Issue | None:
    """A feature equal to the label, or one whose few values each map to a single class (of any
    output), or a step of a window of inputs that is a linear copy of a regression target."""
    for sample in _leak_samples(ctx):
        issue = _label_leak(ctx, sample)
        if issue is not None:
            return issue
    return _text_column_leak(ctx) or _window_leak(ctx) or _mask_leak(ctx)


def _text_column_leak(ctx: DataContext) -> Issue | None:
    """A text input of one word a row (a category for a ``StringLookup``: ``'pos'``/``'neg'``,
    ``'approved'``) whose few values each map to one class, as :func:`_class_leak` finds it in a
    numeric feature.

    Texts were no numbers, so the rule read none: the label's own class names fed to a
    ``StringLookup`` trained without a word. Texts of several words (prose for a
    ``TextVectorization``) are not read: a few sentences repeated each make one class by chance.
    """
    for i, a in enumerate(ctx.xs):
        if not _is_text(a) or not (a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1)) or len(a) < 20:
            continue
        n = min(len(a), _LEAK_ROWS)
        texts = [_text_key(v) for v in strided_rows(a, n).ravel().tolist()]
        if not all(isinstance(v, str) and v.strip() and len(v.split()) == 1 for v in texts):
            continue
        values = sorted(set(texts))
        if not 2 <= len(values) <= _few_values(len(texts)):
            continue
        codes = np.array([values.index(v) for v in texts])
        name = input_label("x", i, len(ctx.xs), ctx.input_keys)
        for t in ctx.targets:
            if t.task not in ("binary", "multiclass") or t.y is None or len(t.y) != len(a):
                continue
            ids = class_ids(t, strided_rows(t.y, n))
            if ids is None or np.unique(ids).size < 2 or len(ids) != len(codes):
                continue
            all_ids = class_ids(t, t.y)
            if (ctx.where and _label_sorted(ids)) or (all_ids is not None and _ordered_labels(ctx, all_ids) is not None):
                continue  # a dataset's first batches in label order: their few classes (see _label_leak)
            if all(np.unique(ids[codes == k]).size == 1 for k in range(len(values))):
                shown = ", ".join(repr(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
                return Issue(
                    f"Each of the {len(values)} values of the text input {name} ({shown}) maps to a single class in all "
                    f"{len(texts)} sampled rows, so it predicts {_label_text(ctx, t, 'the class label')} perfectly: it is probably "
                    f"the label, or something computed from it, leaking into the inputs. The model will learn this shortcut "
                    f"and fail on data where the label is unknown.",
                    f"Leave the input {name} out (its keras.Input and the layers that read it) unless it is really available "
                    f"at prediction time, and check how the inputs were built.",
                    {"input": name, "rows_checked": len(texts), "distinct_values": len(values)})
    return None


def _window_leak(ctx: DataContext) -> Issue | None:
    """A value of a 3-D input (``(rows, steps, features)``: a window of a time series) that is a
    linear copy of a one-column regression target: the window holds the step it is to predict.

    Only 2-D inputs were sampled, so the classic look-ahead of a forecast (windows ``s[i+1:i+25]``
    for the target ``s[i+24]``, or ``timeseries_dataset_from_array(data, data[23:], 24)``, one
    step off) trained a GRU on a noisy sine to val_loss 0.010, a third of the 0.032 honest windows
    reach (the noise is not predictable), without a word, where the same windows flattened to 2-D
    got label-leakage.
    """
    for i, x in enumerate(ctx.xs):
        if x.ndim != 3 or not is_numeric(x) or len(x) < 20 or any(k == i for k, *_ in ctx.embeddings):
            continue
        steps, features = x.shape[1], x.shape[2]
        if not 2 <= steps * features <= _LEAK_MAX_FEATURES:
            continue
        rows = max(200, min(_LEAK_ROWS, _LEAK_VALUES // (steps * features)))
        xs = strided_rows(x, rows).reshape(-1, steps * features).astype(np.float64)
        if not np.isfinite(xs).all():
            continue
        for t in ctx.targets:
            if t.task != "regression" or t.y is None or len(t.y) != len(x) or not is_numeric(t.y):
                continue
            if t.y.ndim > 2 and t.y.shape[1] == steps:
                continue  # a target a step (a sequence-to-sequence model's, shifted by design), not a horizon
            copy = _target_copy(xs, strided_rows(t.y, rows))
            if copy is None:
                continue
            column, j, corr = copy
            step, feature = divmod(j, features)
            name = input_label("x", i, len(ctx.xs), ctx.input_keys)
            where = f"{name}[:, {step}, {feature}]"
            horizon = t.y.shape[1] if t.y.ndim > 1 and int(np.prod(t.y.shape[1:])) > 1 else 1
            first = "" if horizon == 1 else " first"
            return Issue(
                f"Step {step} of {steps} (feature {feature}) of the windows {name}{ctx.where}, {where}, is a linear copy of "
                f"{_target_label(ctx, t, column)} (correlation {corr:.5f} in {len(xs)} sampled rows): each window holds "
                "a value it is to predict (look-ahead leakage: a window that ends at the target's step instead of the step "
                f"before its{first} one). The model learns to read it off and fails where the future is unknown.",
                ("End each window one step before the value it predicts: x = s[i:i+w] for y = s[i+w] (with keras.utils."
                 "timeseries_dataset_from_array(data[:-1], targets=data[w:], sequence_length=w)), and check the target "
                 "column is not among the window's features at the last step." if horizon == 1 else
                 f"End each window one step before the first of the {horizon} values it predicts: x = s[i:i+w] for "
                 f"y = s[i+w:i+w+{horizon}], and check the target column is not among the window's features at the last step."),
                {"feature": j, "step": step, "window_feature": feature, "correlation": corr, "rows_checked": len(xs),
                 **({"target_column": column} if horizon > 1 else {}), **({} if name == "x" else {"input": name})},
                t.output.layer if t.output else None)
    return None


def _target_copy(xs: np.ndarray, y: np.ndarray) -> tuple[int, int, float] | None:
    """``(target column, feature, correlation)`` of the first column of regression targets ``y``
    (a multi-step forecast's horizon, ``(rows, H)`` or ``(rows, H, 1)``, flattened) that a column
    of ``xs`` is a linear copy of (see :func:`_linear_copy`), else ``None``.

    Only one-column targets were read: windows of a noisy sine one step off, whose last value is
    the first of the 5 values they predict, trained an MLP to val_loss 0.34 where honest windows
    reach 0.42 (their linear fits 0.30 and 0.37), without a word.
    """
    columns = y.reshape(len(y), -1)
    if columns.shape[1] > _LEAK_MAX_TARGET_COLUMNS:
        return None
    for c in range(columns.shape[1]):
        copy = _linear_copy(xs, columns[:, c])
        if copy is not None:
            return c, *copy
    return None


def _target_label(ctx: DataContext, t: Target, column: int) -> str:
    """``the target``, or ``column 0 of the target (y[:, 0, 0], the first of 5 steps)`` for a
    target of several columns (a forecast's horizon)."""
    label = _label_text(ctx, t, "the target")
    shape = t.y.shape[1:] if t.y is not None else ()
    if int(np.prod(shape)) <= 1:
        return label
    index = ", ".join(str(int(k)) for k in np.unravel_index(column, shape))
    return f"{label}'s column {column} (y[:, {index}], of {int(np.prod(shape))} a row)"


def _mask_leak(ctx: DataContext) -> Issue | None:
    """An image channel that gives away a segmentation's masks: each of its few values maps to a
    single class at every sampled pixel (the mask itself, its complement, mask / 255).

    The features the row rules read are a 2-D input's columns, so images were never read: the mask
    stacked as a second input channel trained to a loss of 0.004 (chance 0.53) without a word, too
    slowly for loss-collapsed (18% of chance after 2 epochs).
    """
    for t in ctx.targets:
        if t.task not in ("binary", "multiclass") or not _predicts_per_position(t):
            continue
        assert t.output is not None and t.output.shape is not None and t.y is not None
        positions = tuple(t.output.shape[1:-1])
        for i, x in enumerate(ctx.xs):
            # A channels-first model's channels are axis 1: its (N, 2, 8, 8) images' axes (2, 8)
            # fit no (8, 8) positions, and a mask stacked as channel 1 went unread.
            axis = 1 if channels_first(ctx, i) and x.ndim > 2 else -1
            x = channels_last(ctx, i, x)
            if x.ndim != len(positions) + 2 or not _fits_positions(x.shape[1:-1], positions) or len(x) != len(t.y) or not is_numeric(x):
                continue
            rows = max(1, _LEAK_VALUES // max(1, int(np.prod(x.shape[1:]))))
            found = _position_class_ids(dataclasses.replace(t, y=strided_rows(t.y, rows)))
            if found is None or np.unique(found[0]).size < 2:
                continue
            ids = found[0]
            pixels = strided_rows(x, rows).reshape(-1, x.shape[-1])
            if t.loss.ignore_class is not None and pixels.shape[0] == strided_rows(t.y, rows).size:
                # Void pixels have no class id: the pixels read are the labelled ones alone.
                pixels = pixels[strided_rows(t.y, rows).reshape(-1) != t.loss.ignore_class]
            if len(pixels) != len(ids) or not np.isfinite(pixels).all():
                continue
            name = input_label("x", i, len(ctx.xs), ctx.input_keys)
            for c in range(pixels.shape[1]):
                values = np.unique(pixels[:, c])
                if values.size < 2 or values.size > _few_values(len(pixels)):
                    continue
                order = np.argsort(pixels[:, c], kind="stable")
                col, lab = pixels[order, c], ids[order]
                if not np.all((lab[1:] == lab[:-1]) | (col[1:] != col[:-1])):
                    continue
                same = bool(np.array_equal(pixels[:, c], ids))
                return Issue(
                    f"Channel {c} of {name} gives away {_label_text(ctx, t, 'the masks')}: "
                    + (f"it is identical to the class of every one of the {len(ids)} sampled pixels" if same else
                       f"each of its {values.size} values maps to a single class at every one of the {len(ids)} sampled pixels")
                    + ". It is the mask, or something computed from it, stacked into the inputs: the model copies it "
                    "(the loss falls towards 0 within a few epochs) and fails on images that come without their masks.",
                    f"Remove the channel ({name} = np.delete({name}, {c}, axis={axis}), and the model's input one channel "
                    f"narrower) unless it is really there at prediction time; check how the input channels were stacked.",
                    {"channel": c, "pixels_checked": len(ids), "distinct_values": int(values.size), "identical": same,
                     **({} if name == "x" else {"input": name})}, t.output.layer)
    return None


def _fits_positions(got: Sequence[int], positions: Sequence[int | None]) -> bool:
    """Whether an input's spatial axes are the output's positions (``None``: any size)."""
    return len(got) == len(positions) and all(p is None or p == g for g, p in zip(got, positions, strict=True))


def _label_leak(ctx: DataContext, sample: _LeakSample) -> Issue | None:
    if sample[2].task == "regression":
        # One feature in all the model's inputs that is a linear copy of the target is the task.
        alone = sum(int(np.prod(x.shape[1:])) for x in ctx.xs) < 2
        return None if alone else _regression_leak(sample.xs, sample.y, sample.columns, label=_label_text(ctx, sample[2], "the target"))
    if sample[2].task == "multilabel":
        return _multilabel_leak(ctx, sample)
    ids = _sampled_class_ids(sample)
    if ids is None:
        return None
    # A dataset's first batches in label order (unshuffled-dataset's case) hold a class or two:
    # sorted digits' first 256 rows, 0s and 1s, had a pixel of 12 values that told them apart.
    # Sorted rows batched before a shuffle hold a few classes' batches alike.
    t = sample[2]
    all_ids = class_ids(t, t.y) if t.y is not None else None
    few_values = not ((ctx.where and _label_sorted(ids)) or (all_ids is not None and _ordered_labels(ctx, all_ids) is not None))
    return _class_leak(ctx, sample, ids, _label_text(ctx, sample[2], "the class label"), few_values=few_values)


def _multilabel_leak(ctx: DataContext, sample: _LeakSample) -> Issue | None:
    """:func:`_class_leak` for each 0/1 label column of a multilabel target, as a binary label.

    A multilabel target has no one class id a row, so the rule read none of its columns: a label
    column copied into x (``data.leak_label`` on a multilabel recipe) trained without a word.
    """
    xs, y, t, _ = sample
    if y.ndim != 2 or not np.isin(y, (0, 1)).all():  # soft or malformed labels: label-format's
        return None
    if y.shape[1] > 1 and y.shape == xs.shape and np.mean(xs == y) >= 0.9:
        # Label columns that are the features themselves: a binary autoencoder's reconstruction
        # (fit(x, x) on 0/1 pixels, task='multilabel'), as _regression_leak skips them: 16 binary
        # features were told "Feature 0 is identical to label column 0". As many label columns as
        # features alone is no autoencoder: 10 labels beside 10 features, one a copy of label 7, went unsaid.
        return None
    for k in range(y.shape[1]):
        ids = y[:, k].astype(np.int64)
        if np.all(ids == ids[0]):  # one class in the sample: no feature can give it away
            continue
        issue = _class_leak(ctx, sample, ids, _label_text(ctx, t, f"label column {k}"))
        if issue is not None:
            return dataclasses.replace(issue, evidence={**issue.evidence, "label_column": k})
    return None


def _class_leak(ctx: DataContext, sample: _LeakSample, ids: np.ndarray, label: str, few_values: bool = True) -> Issue | None:
    """A feature of the sample's rows equal to the class ids ``ids``, the label one-hot encoded into features,
    or (``few_values``) a feature whose few values each map to one class (``label``: how messages name it)."""
    xs, columns = sample.xs, sample.columns
    n = len(xs)
    equal = np.flatnonzero((xs == ids[:, None]).all(axis=0))
    if len(equal):
        j = int(equal[0])
        return _leak_issue(j, f"{_feature(j, columns, capital=True)} is identical to {label} in all {n} sampled rows",
                           {"feature": j, "rows_checked": n, "distinct_values": int(np.unique(xs[:, j]).size)}, columns)
    one_hot = _one_hot_label_columns(xs, ids)
    if one_hot is not None:
        found = sorted(one_hot.values())
        listing = ", ".join(f"{feature_label(j, columns.names)} for class {c}" for c, j in sorted(one_hot.items()))
        return _leak_issue(
            found, f"Features {', '.join(map(str, found))}{_of_input(columns)} are {label} one-hot encoded: each is 1 exactly in "
            f"the rows of one class ({listing}) in all {n} sampled rows",
            {"feature": found[0], "features": found, "classes": sorted(one_hot), "rows_checked": n}, columns)
    if not few_values or any(index == columns.index for index, *_ in ctx.embeddings):
        # Token ids, not features: a task whose label is decided by the token at one position
        # ("does it start with id 3?") maps each of that position's few ids to one class, which
        # is the task, not a leak. Only a position equal to the label (above) is one.
        return None
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
                int(j), f"Each of the {int(distinct[j])} values of {_feature(int(j), columns)} maps to a single "
                f"class in all {n} sampled rows, so it predicts {label} perfectly",
                {"feature": int(j), "rows_checked": n, "distinct_values": int(distinct[j])}, columns)
    return None


def _one_hot_label_columns(xs: np.ndarray, ids: np.ndarray) -> dict[int, int] | None:
    """``{class: feature}`` for 0/1 features each equal to one class's indicator, when they cover
    every class or all but one (a drop-first encoding), else ``None``.

    No single one of them equals the label or maps each of its values to one class (its 0 stands
    for every other class), so the rules feature by feature missed the label one-hot encoded into
    x. Three classes at least: a binary label's indicators are the label and 1 - label.
    """
    classes = np.unique(ids)
    if classes.size < 3:
        return None
    binary = np.flatnonzero(((xs == 0) | (xs == 1)).all(axis=0))
    if binary.size < classes.size - 1:
        return None
    indicators = (ids[:, None] == classes[None, :]).astype(np.float64)
    cols = xs[:, binary]
    both = cols.T @ indicators  # [binary features, classes]: rows where the feature is 1 and the label is the class
    match = (both == cols.sum(axis=0)[:, None]) & (both == indicators.sum(axis=0)[None, :])
    found = {int(classes[k]): int(binary[np.argmax(match[:, k])]) for k in range(classes.size) if match[:, k].any()}
    return found if len(found) >= classes.size - 1 else None


def one_feature_separates(ctx: DataContext) -> Issue | None:
    """A continuous feature that alone puts every class in an interval of its own.

    Only a note: the label plus a little noise (a leak) looks like this, and so do well-separated
    clusters (13 of 20 ``make_blobs`` data sets). Nothing in one feature tells them apart; the
    user can, by knowing where the feature comes from.
    """
    for sample in _leak_samples(ctx):
        ids = _sampled_class_ids(sample)
        separating = _separating_feature(sample[0], ids) if ids is not None else None
        if separating is not None:
            break
    else:
        return None
    xs, columns = sample.xs, sample.columns
    j, gap, share = separating
    return Issue(
        f"{_feature(j, columns, capital=True)} alone separates {_label_text(ctx, sample[2], 'the classes')}: each class lies in an interval of its own, the "
        f"closest two {gap:.1f} within-class standard deviations apart, in all {len(xs)} sampled rows "
        f"(its class means explain {share:.1%} of its variance). Either the classes are that easy, or "
        f"the feature is the label leaking in (a noisy copy of it, or something computed from it).",
        f"If {_feature(j, columns)} is not known at prediction time, or is derived from the label, remove it "
        f"({_removal(j, columns)}); a validation score near 100% with it is then not real.",
        {"feature": j, "rows_checked": len(xs), "gap_in_within_class_stds": round(gap, 3), "variance_explained": round(share, 4),
         **_input_evidence(columns)})


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
    """``[classes, features]``: the sum of each class's rows (``inverse``: each row's class index).

    The rows sorted by class and summed class by class, never a product with a one-hot matrix:
    NumPy's multi-threaded BLAS products in a process that has imported TensorFlow stalled
    intermittently on the shared 2-core CI machine, the first ones 200-430 ms each (1-2 ms warm),
    and this was often one (0.43 s of a 0.8 s check_data, 10 classes x 50 features x 20,000 rows);
    sorted sums take 4-30 ms whatever runs beside them.
    """
    order = np.argsort(inverse, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(inverse, minlength=classes))[:-1]])
    return np.add.reduceat(xs[order], starts, axis=0)


def _regression_leak(xs: np.ndarray, y: np.ndarray, columns: _Columns, label: str = "the target") -> Issue | None:
    width = int(np.prod(y.shape[1:]))
    if width > 1 and width == xs.shape[1]:
        return None  # as many target columns as features: an autoencoder's reconstruction, its targets its inputs
    copy = _target_copy(xs, y)
    if copy is None:
        monotone = _monotone_copy(xs, y) if width == 1 and xs.shape[1] >= _MONOTONE_MIN_FEATURES else None
        if monotone is None:
            return None
        j, rank, corr = monotone
        return _leak_issue(j, f"{_feature(j, columns, capital=True)} is a monotone function of {label} (its logarithm, a power "
                              f"of it or the like: rank correlation {rank:.5f}, correlation {corr:.3f}, in {len(xs)} sampled rows)",
                           {"feature": j, "rank_correlation": rank, "correlation": corr, "rows_checked": len(xs)}, columns)
    column, j, corr = copy
    of = f"{label}'s column {column} (of {width} a row)" if width > 1 else label
    return _leak_issue(j, f"{_feature(j, columns, capital=True)} is a linear copy of {of} (correlation {corr:.5f} "
                          f"in {len(xs)} sampled rows)",
                       {"feature": j, "correlation": corr, "rows_checked": len(xs), **({"target_column": column} if width > 1 else {})},
                       columns)


def _linear_copy(xs: np.ndarray, y: np.ndarray) -> tuple[int, float] | None:
    """``(feature, correlation)`` of the column of ``xs`` most correlated with a one-column target
    ``y``, when it is a linear copy of it (:data:`LEAK_CORRELATION`), else ``None``."""
    if y.reshape(len(y), -1).shape[1] != 1:
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
    gap = 1.0 - abs(float(corr[j]))
    if gap > _EXACT_COPY_GAP and xs.shape[1] > 1:
        # A target no closer to the feature than another feature is: consecutive values of a smooth
        # series (a forecast's window), the target its next one, not a copy. A 20,000-step random
        # walk's last window value correlates 0.99994 with the next value, as with the one before.
        others = np.delete(xc, j, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            near = (others * xc[:, j:j + 1]).sum(axis=0) / np.sqrt((others * others).sum(axis=0) * (xc[:, j] @ xc[:, j]))
        if np.any(1.0 - np.abs(np.nan_to_num(near)) <= _NEIGHBOUR_FACTOR * gap):
            return None
    return j, float(corr[j])


#: Features whose correlation with a one-column regression target, or with its ranks, reaches this
#: (the few most correlated) are ranked and compared with the target's ranks: the log of
#: diabetes' targets (25..346) correlates 0.966 with them, 1 / y of log-normal targets -0.77 with
#: their ranks, exp(y / 100) 0.58 with them.
_MONOTONE_SCREEN, _MONOTONE_SCREEN_FEATURES = 0.5, 8
#: Features a model must read for a monotone function of the target among them to count as a leak:
#: with one or two (``x`` and an unused column) a target ``sin(x)`` on [0, 1.5] is a function to fit,
#: the task itself, not a leak (it was told label-leakage); a table's log_price column is one of many.
_MONOTONE_MIN_FEATURES = 3


def _correlations(xs: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The correlation of each column of ``xs`` with ``target`` (0 for a constant)."""
    xc, yc = xs - xs.mean(axis=0), target - target.mean()
    denom = np.sqrt((xc * xc).sum(axis=0) * (yc * yc).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (xc * yc[:, None]).sum(axis=0) / np.where(denom > 0, denom, 1.0), 0.0)


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """The ranks of ``v``'s values, ties at their mean rank (a tie of the target is one of its copy,
    increasing or decreasing)."""
    ranks = np.empty(len(v), dtype=np.float64)
    ranks[np.argsort(v, kind="stable")] = np.arange(len(v))
    _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, ranks) / counts)[inverse]


def _monotone_copy(xs: np.ndarray, y: np.ndarray) -> tuple[int, float, float] | None:
    """``(feature, rank correlation, correlation)`` of a column of ``xs`` that is a monotone function
    of a one-column target ``y`` without being a linear copy: its log or square root (a
    ``log_price`` column left beside the price it predicts), else ``None``.

    Such a column trained the diabetes MLP to val_loss 0.12 (log) and 0.08 (square root) where the
    honest features reach 0.53, with no word of a leak (the second was told it was worse than a
    linear fit). The few features that correlate with the target or its ranks
    (:data:`_MONOTONE_SCREEN`) are ranked and read as :func:`_linear_copy` reads features, its
    rule for a smooth series' neighbouring values included.
    """
    target = y.reshape(-1).astype(np.float64)
    if len(target) < 3 or not np.isfinite(target).all():
        return None
    xs = xs.astype(np.float64)
    ranks = _average_ranks(target)
    corr = _correlations(xs, target)
    screen = np.maximum(np.abs(corr), np.abs(_correlations(xs, ranks)))
    screened = np.flatnonzero(screen >= _MONOTONE_SCREEN)
    if not len(screened):
        return None
    screened = screened[np.argsort(-screen[screened], kind="stable")][:_MONOTONE_SCREEN_FEATURES]
    ranked = np.stack([_average_ranks(xs[:, j]) for j in screened], axis=1)
    copy = _linear_copy(ranked, ranks)
    if copy is None:
        return None
    j = int(screened[copy[0]])
    return j, copy[1], float(corr[j])


def _leak_issue(j: int | list[int], found: str, evidence: dict[str, Any], columns: _Columns) -> Issue:
    evidence = {**evidence, **_input_evidence(columns)}
    if isinstance(j, list):
        return Issue(
            f"{found}: they are the label leaking into the inputs. The model will learn this shortcut and fail on "
            f"data where the label is unknown.",
            f"Remove features {', '.join(map(str, j))}{_of_input(columns)} ({_removal(j, columns)}) and check how the features were built.",
            evidence)
    return Issue(
        f"{found}: it is probably the label, or something computed from it, leaking into the inputs. "
        f"The model will learn this shortcut and fail on data where the label is unknown.",
        f"Remove {_feature(j, columns)} ({_removal(j, columns)}) unless it is really available at "
        f"prediction time, and check how the features were built.", evidence)


def _of_input(columns: _Columns) -> str:
    """`` of x['feat']`` after a feature's index where the model has several inputs; nothing for one."""
    return "" if columns.x == "x" else f" of {columns.x}"


def _feature(j: int, columns: _Columns, *, capital: bool = False) -> str:
    """``feature 3`` (``feature 3 ('income')``), and which input it is of where the model has several."""
    return feature_label(j, columns.names, capital=capital) + _of_input(columns)


def _input_evidence(columns: _Columns) -> dict[str, str]:
    """``{"input": "x['feat']"}`` where the model has several inputs (the feature index is that input's)."""
    return {} if columns.x == "x" else {"input": columns.x}


def _removal(j: int | list[int], columns: _Columns) -> str:
    """How to leave feature ``j`` (or features) out: from x (the input that holds it) in Python, or
    with ``data.drop`` in a recipe."""
    js = j if isinstance(j, list) else [j]
    names = columns.names
    recipe = (f"; in a recipe, data: {{drop: [{', '.join(names[k] for k in js)}]}}"
              if names is not None and all(k < len(names) for k in js) else "")
    return f"{columns.x} = np.delete({columns.x}, {j}, axis=1), and the same from the validation and test rows{recipe}"
