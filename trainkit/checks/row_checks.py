"""Rules on the training rows: how many there are (``few-training-rows``,
``batch-larger-than-data``), how they weigh (``sample-weight-all-zero``,
``sample-weight-negative``) and how the classes share them (``class-imbalance``,
``unshuffled-dataset``), whether a dataset keeps each row with its label (``shuffled-apart``),
and how many share a batch (``batchnorm-batch-of-one``).

Apart from the other rules: these count and weigh rows; none reads a feature's values.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from trainkit.checks.compatibility import CLASSIFICATION_LOSSES, Issue
from trainkit.checks.data_context import (
    DataContext,
    Target,
    class_ids,
    format_number,
    validation_name,
)

IMBALANCE_BINARY_SHARE = 0.10
IMBALANCE_MULTICLASS_RATIO = 0.10
IMBALANCE_MIN_ROWS = 50
#: Multiclass counts that balanced classes drawn at random make at least this often (their
#: smallest that low and their largest that high) are not reported as imbalanced.
IMBALANCE_CHANCE = 1e-3
#: Training rows below which the split is too small to learn from: fewer than this many, or
#: fewer than ``MIN_ROWS_PER_CLASS`` per class of a classifier. The shipped recipes train on 80
#: rows at least (100 rows, 20% held out; 10 classes there, 8 rows each).
MIN_TRAIN_ROWS = 20
MIN_ROWS_PER_CLASS = 2
#: A batch_size this many times the training rows cannot have been chosen for them: every batch
#: is all the rows. Twice, not once: a full batch over the whole set before the validation split
#: (batch_size 100 for 100 rows, 80 of them training) is a deliberate full-batch run.
BATCH_OVER_ROWS = 2
#: A dataset's first batches whose labels run in class order are judged unshuffled only where a
#: random order would sort them less than once in this many tries: 255 rows of class 0 and one
#: of class 1 last is a random order's 1 in 128, and no proof.
SORTED_ODDS = 1e4
#: Batches of one class a dataset that never shuffles must start with to be judged sorted: one
#: or two of them come from many a class mix read in the rows' own order.
MIN_SAMPLED_BATCHES = 4


def _label_sorted(ids: np.ndarray) -> bool:
    """Whether class ids of two classes or more run in class order (rising or falling), an order
    a random one makes less than once in ``SORTED_ODDS`` tries (the rows' multinomial coefficient)."""
    # np.unique, not np.bincount: the label an ignore_class loss leaves out may be -1, which
    # bincount refuses ("must have no negative elements"), failing fit on a valid dataset.
    counts = np.unique(ids, return_counts=True)[1]
    if counts.size < 2:
        return False
    steps = np.diff(ids)
    if not (np.all(steps >= 0) or np.all(steps <= 0)):
        return False
    log_orders = math.lgamma(len(ids) + 1) - sum(math.lgamma(int(c) + 1) for c in counts)
    return log_orders - math.log(2) > math.log(SORTED_ODDS)


def _one_class_batches(ids: np.ndarray, batch_rows: Sequence[int]) -> bool:
    """Whether the sampled batches, holding two classes or more between them, each hold one class
    (all but one of them: a batch where the sorted rows change class), where a random order would
    make those batches pure less than once in ``SORTED_ODDS`` tries.

    ``dataset.batch(32).shuffle(n)`` on rows sorted by label: the batches come in a random order,
    so the labels run in no class order, but each batch is one class's. The chance a random batch
    of n rows is pure is about the sum of the class shares to the n-th power.
    """
    if len(batch_rows) < 2 or sum(batch_rows) != ids.size:
        return False
    counts = np.bincount(ids)
    if np.count_nonzero(counts) < 2:
        return False
    shares = counts[counts > 0] / ids.size
    batches = np.split(ids, np.cumsum(batch_rows)[:-1])
    pure = [len(b) for b in batches if len(b) and np.all(b == b[0])]
    if len(pure) < len(batches) - 1:
        return False
    log_chance = sum(math.log(float(np.sum(shares ** n))) for n in pure)
    return log_chance < -math.log(SORTED_ODDS)


def _ordered_labels(ctx: DataContext, ids: np.ndarray) -> str | None:
    """How a dataset's sampled labels betray rows sorted by label: ``"sorted"`` (they run in class
    order), ``"batches"`` (each batch holds one class), or ``None``."""
    if not ctx.where or not ids.size or ids.min() < 0:  # numpy rows: fit shuffles them each epoch
        return None
    if _label_sorted(ids):
        return "sorted"
    return "batches" if _one_class_batches(ids, ctx.batch_rows) else None


def _sorted_target(ctx: DataContext) -> tuple[Target, np.ndarray, str] | None:
    """The first classifier target whose sampled dataset batches hold its classes in label order
    (or one class each), and how (see :func:`_ordered_labels`)."""
    if not ctx.where:  # numpy rows: fit shuffles them each epoch (unless told not to)
        return None
    for t in ctx.targets:
        if t.task not in ("binary", "multiclass") or t.y is None or t.loss.kind not in CLASSIFICATION_LOSSES:
            continue
        ids = class_ids(t, t.y)
        order = _ordered_labels(ctx, ids) if ids is not None else None
        if order is not None:
            return t, ids, order
    return None


def shuffled_apart_rows(ctx: DataContext) -> Issue | None:
    """A dataset zipped from a shuffled and an unshuffled dataset of as many rows: each row meets
    another row's label.

    ``tf.data.Dataset.zip((x_ds, y_ds.shuffle(n)))`` (or the inputs shuffled alone) pairs the
    rows at random: a learnable validation set so built was told by loss-at-chance that the model
    memorised random labels (val_loss 125% of chance, training loss 0.06); as training data, the
    labels are random.
    """
    if not ctx.shuffled_apart:
        return None
    names = " and ".join(ctx.shuffled_apart)
    # image_dataset_from_directory(d, labels=None) zipped with labels read in the files' sorted
    # order: no .shuffle() was written, its shuffle=True default shuffled the images alone, and
    # the advice to "never shuffle one side" pointed at a call the user could not find.
    files = [name for name in ctx.shuffled_apart if name in ctx.shuffled_apart_files]
    by_files = (f" The side that shuffles in {' and '.join(files)} is a dataset of Keras's image_dataset_from_directory "
                "(or text_/audio_dataset_from_directory), which shuffles its files unless given shuffle=False."
                if files else "")
    files_advice = ("For a *_dataset_from_directory dataset, give it the labels, labels=[...] in the alphanumeric "
                    "order of its file paths, and it shuffles them with their files; or pass shuffle=False to it "
                    "and shuffle after the zip. " if files else "")
    return Issue(
        f"The pipeline of {names} zips a dataset that shuffles with one of as many rows that does not "
        "(tf.data.Dataset.zip((x_ds, y_ds.shuffle(n))), or the inputs shuffled alone): each row is paired with another "
        "row's label, so the labels are random for the model "
        f"({'it learns nothing' if 'x' in ctx.shuffled_apart else 'val_loss stays at chance whatever it learns'}).{by_files}",
        f"{files_advice}Zip first and shuffle the pairs: tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n) (or "
        "tf.data.Dataset.zip((x_ds, y_ds)).shuffle(n)); never shuffle one side of a zip alone.",
        {"datasets": list(ctx.shuffled_apart), "from_directory": files})


def _batch_shuffle(ctx: DataContext) -> str:
    """What shuffled the training batches whole: ``fit``'s ``shuffle`` for a PyDataset's, a
    ``.shuffle()`` after ``.batch()`` for a tf.data pipeline's."""
    return "fit's shuffle=True reorders a PyDataset's batches, not their rows" if ctx.pydataset else "dataset.batch(...).shuffle(...)"


def _no_shuffle(ctx: DataContext) -> str:
    """Where the rows go unshuffled: a PyDataset's own code, or a tf.data pipeline without ``.shuffle()``."""
    return f"the {ctx.pydataset} does not shuffle its rows" if ctx.pydataset else "the dataset's pipeline has no .shuffle()"


def _shuffle_advice(ctx: DataContext, dataset_advice: str) -> str:
    """``dataset_advice`` (a tf.data pipeline's fix), or for a PyDataset the fix in its own code:
    trainkit's ``dataset.shuffle()`` advice named a pipeline the user never built."""
    if not ctx.pydataset:
        return dataset_advice
    return (f"Shuffle the rows inside the {ctx.pydataset}: keep a permutation of the row indices (np.random.permutation(n_rows) in "
            "__init__, a new one in on_epoch_end) and take each batch's rows through it in __getitem__; fit(shuffle=True) "
            "only reorders whole batches, each still one class.")


def unshuffled_dataset(ctx: DataContext) -> Issue | None:
    """A dataset whose first batches come in label order: rows sorted by class, never shuffled."""
    found = _sorted_target(ctx)
    if found is None:
        return _one_class_unshuffled(ctx)
    t, ids, order = found
    change = int(np.flatnonzero(np.diff(ids))[0]) + 1
    counts = {int(c): int(n) for c, n in enumerate(np.bincount(ids)) if n}
    if order == "batches":
        batches = np.split(ids, np.cumsum(ctx.batch_rows)[:-1])
        pure = sum(1 for b in batches if len(b) and np.all(b == b[0]))
        return Issue(
            f"The labels{' of ' + t.name if len(ctx.targets) > 1 else ''}{ctx.where} come one class a batch "
            f"({pure} of the {len(batches)} batches all one class; {', '.join(f'class {c}: {n} rows' for c, n in counts.items())} "
            f"in all), "
            f"an order a random one makes less than once in {SORTED_ODDS:,.0f} tries: the rows are sorted by label and "
            f"batched before they are shuffled ({_batch_shuffle(ctx)}), which reorders whole one-class "
            f"batches. Every step then pulls the model towards one class, and the class counts of these batches say "
            f"nothing about the data's.",
            _shuffle_advice(ctx, "Shuffle the rows before batching: dataset.shuffle(n_rows, reshuffle_each_iteration=True).batch(...) "
            "(a buffer as large as the data, or shuffle x and y together before from_tensor_slices)."),
            {"counts": list(counts.values()), "classes": list(counts), "one_class_batches": pure, "batches": len(batches)},
            t.output.layer if t.output else None)
    return Issue(
        f"The labels{' of ' + t.name if len(ctx.targets) > 1 else ''}{ctx.where} run in class order "
        f"({', '.join(f'class {c}: {n}' for c, n in counts.items())}; the first {change} rows all class "
        f"{int(ids[0])}): the dataset was built from rows sorted by label and is not shuffled. Each "
        f"batch then holds one class, every step pulls the model towards it, and each epoch ends on "
        f"the last class's batches; the class counts of these batches say nothing about the data's.",
        _shuffle_advice(ctx, "Shuffle the rows before batching: dataset.shuffle(n_rows, reshuffle_each_iteration=True)"
        ".batch(...) (a buffer as large as the data, or shuffle x and y together before "
        "from_tensor_slices); a shuffle after .batch() only reorders the one-class batches."),
        {"counts": list(counts.values()), "classes": list(counts), "first_change_row": change},
        t.output.layer if t.output else None)


def _one_class_unshuffled(ctx: DataContext) -> Issue | None:
    """A dataset whose pipeline never shuffles and whose first batches, more of them to come,
    hold one class: the first rows of data sorted by label.

    20,000 rows of 3 classes sorted by label and batched without .shuffle(): the 8 batches the
    checks read were all class 0, which no class order shows, and the run trained on one class
    after another without a word (validation loss 0.82 where the training loss read 0.33).
    """
    if ctx.dataset_shuffled is not False or len(ctx.batch_rows) < MIN_SAMPLED_BATCHES:
        return None
    if ctx.dataset_batches is not None and ctx.dataset_batches <= len(ctx.batch_rows):
        return None  # the whole dataset was read: one class is all of it (no order to blame)
    for t in ctx.targets:
        if t.task not in ("binary", "multiclass") or t.y is None or t.loss.kind not in CLASSIFICATION_LOSSES:
            continue
        ids = class_ids(t, t.y)
        if ids is None or not ids.size or ids.min() < 0 or not np.all(ids == ids[0]):
            continue
        rows = int(ids.size)
        further = _further_class_ids(ctx, t)
        if further is not None and not np.all(further == ids[0]):
            # Another class came after the batches read: the run of class ids[0] the rows start
            # with is a sorted block only if a random order of these rows would start so rarely
            # with one (1% positives: 256 rows without one 7.6% of the time).
            run = rows + int(np.flatnonzero(further != ids[0])[0])
            share = (rows + int(np.sum(further == ids[0]))) / (rows + further.size)
            if share ** run * SORTED_ODDS > 1:
                return None
            return Issue(
                f"The first {run} labels{' of ' + t.name if len(ctx.targets) > 1 else ''} of the dataset are all class {int(ids[0])}, "
                f"although it is {share:.0%} of the first {rows + further.size} rows, and {_no_shuffle(ctx)}: "
                f"the rows look sorted by label (a random order starts with so long a run less than once in {SORTED_ODDS:,.0f} tries). "
                f"Then each batch holds one class, every step pulls the model towards it, and each epoch ends on the last class's batches.",
                _shuffle_advice(ctx, "Shuffle the rows before batching: dataset.shuffle(n_rows, reshuffle_each_iteration=True).batch(...) "
                "(a buffer as large as the data, or shuffle x and y together before from_tensor_slices)."),
                {"class": int(ids[0]), "rows": run, "share": round(share, 4), "shuffled": False},
                t.output.layer if t.output else None)
        if further is not None:
            rows += int(further.size)  # still the one class, further on
        return Issue(
            f"Every label{' of ' + t.name if len(ctx.targets) > 1 else ''}{ctx.where if further is None else f' in the first {rows} rows'} "
            f"is class {int(ids[0])} ({rows} rows), "
            f"and {_no_shuffle(ctx)}: the rows look sorted by label. Then each batch holds one class, "
            f"every step pulls the model towards it, and each epoch ends on the last class's batches (unless class "
            f"{int(ids[0])} is nearly all of the data: then its share, not the order, is the problem).",
            _shuffle_advice(ctx, "Shuffle the rows before batching: dataset.shuffle(n_rows, reshuffle_each_iteration=True).batch(...) "
            "(a buffer as large as the data, or shuffle x and y together before from_tensor_slices)."),
            {"class": int(ids[0]), "rows": rows, "batches": len(ctx.batch_rows), "shuffled": False},
            t.output.layer if t.output else None)
    return None


def _further_class_ids(ctx: DataContext, t: Target) -> np.ndarray | None:
    """The class ids of ``t``'s labels in the training dataset's rows past those sampled (``None``:
    none read)."""
    if ctx.further_labels is None:
        return None
    per_target = ctx.further_labels()
    index = next((i for i, other in enumerate(ctx.targets) if other is t), None)
    labels = per_target[index] if per_target is not None and index is not None and index < len(per_target) else None
    if labels is None or not len(labels):
        return None
    ids = class_ids(t, labels)
    return ids if ids is not None and ids.size and ids.min() >= 0 else None


def class_imbalance(ctx: DataContext) -> Issue | None:
    """A minority class under 10% (binary) or a class 10x rarer than the largest (multiclass).

    Not the row labels of a dataset's first batches that a shuffle buffer smaller than its rows
    drew from its first rows (:attr:`~trainkit.checks.data_context.DataContext.dataset_shuffle_short`):
    2,000 rows sorted by label, 3 classes alike, ``.shuffle(1000).batch(32)`` read classes 0 and 1
    alone and were told "hold class ids 0..1 only, but the output layer has 3 units" (seeds 0-2).
    """
    short = ctx.dataset_shuffle_short and not (ctx.dataset_batches is not None and ctx.dataset_batches <= len(ctx.batch_rows))
    for t in ctx.targets:
        if short and (t.task == "multilabel" or not _predicts_per_position(t)):
            continue  # the class mix of its first rows: the data's only where those are in random order
        if t.task == "multilabel" and t.y is not None and len(t.y) >= IMBALANCE_MIN_ROWS:
            issue = _multilabel_imbalance(ctx, t)
            if issue is not None:
                return issue
            continue
        if t.task in ("binary", "multiclass") and _predicts_per_position(t):
            issue = _pixel_imbalance(ctx, t)
            if issue is not None:
                return issue
            continue
        if t.task not in ("binary", "multiclass") or t.y is None or len(t.y) < IMBALANCE_MIN_ROWS or t.loss.kind not in CLASSIFICATION_LOSSES:
            continue
        ids = class_ids(t, t.y)
        # The rows the loss leaves out (ignore_class) are no class: 255 was counted as one, and
        # 5 classes read "the rarest have class 5: 0, class 6: 0, class 7: 0" (-1 skipped the check).
        kept = ids != t.loss.ignore_class if ids is not None and t.loss.ignore_class is not None else None
        if kept is not None:
            ids = ids[kept]
        # Batches in label order count the first classes only: unshuffled-dataset's case, where
        # "class 2: 0, class 1: 22, against 234 for class 0" advised class weights for balanced data.
        if ids is not None and _ordered_labels(ctx, ids) is not None:
            continue
        # One class only is single-class's error (or allowed): no weights can balance it.
        if ids is None or ids.size == 0 or ids.min() < 0 or np.all(ids == ids[0]):
            continue
        k = max(int(ids.max()) + 1, 2 if t.task == "binary" else 1)
        if t.task == "multiclass" and t.units and t.units > 1 and len(ids) >= 10 * t.units:
            k = max(k, t.units)
        counts = np.bincount(ids, minlength=k)
        if t.task == "binary" or k == 2:
            minority = int(np.argmin(counts[:2]))
            share = counts[minority] / counts[:2].sum()
            if share >= IMBALANCE_BINARY_SHARE or _weights_balance(ctx, ids, k, binary=True, kept=kept):
                continue
            n = int(counts[:2].sum())
            weights = {c: round(n / (2 * max(1, int(counts[c]))), 2) for c in (0, 1)}
            p = max(float(counts[1]) / n, 1e-6)
            bias = math.log(p / max(1 - p, 1e-6))
            # An output bias already at the prior's log-odds (as this advice says to set it) was
            # told to set it all the same.
            start = ctx.output_biases.get(t.output.layer) if t.output is not None and (t.units or 1) == 1 else None
            bias_advice = ("" if start is not None and abs(start - bias) < 0.05 else
                           f", and initialise the output bias to log(p / (1 - p)) = {bias:.2f} (in a recipe, "
                           f"bias_initializer: {{name: constant, value: {bias:.2f}}} on the output layer)")
            if (t.units or 1) > 1:
                # A softmax over 2 units takes the same value on both biases as no change: "the
                # output bias = -3.66" (bias_initializer constant -3.66) left it predicting 50/50.
                shares = counts[:2] / n
                logs = ", ".join(f"{math.log(max(float(q), 1e-6)):.2f}" for q in shares)
                bias_advice = (f", and initialise the output layer's biases to the log class shares, one a unit: "
                               f"log([{shares[0]:.3g}, {shares[1]:.3g}]) = [{logs}] (model.layers[-1].bias.assign(...) after building it)")
            return Issue(
                f"Class {minority} is {share:.1%} of {_labels(ctx, t)}{ctx.where} ({int(counts[minority])} of {n}): "
                f"always predicting class {1 - minority} already scores {1 - share:.1%} accuracy, and "
                f"the gradient is dominated by the majority class.",
                f"{_pass_weights(ctx, t, str(weights))}, or oversample class {minority}; judge the model by "
                f"AUC, precision and recall rather than accuracy{bias_advice}.",
                {"counts": [int(c) for c in counts[:2]], "minority_class": minority, "minority_share": float(share)},
                t.output.layer if t.output else None)
        wider = _output_wider_than_labels(ctx, t, ids)
        if wider is not None:
            return wider
        ratio = counts.min() / max(1, counts.max())
        if ratio >= IMBALANCE_MULTICLASS_RATIO or _weights_balance(ctx, ids, k, binary=False, kept=kept):
            continue
        absent = [int(c) for c in np.flatnonzero(counts == 0)]
        if absent == [0] and t.units and int(ids.max()) == t.units - 1:
            return Issue(
                f"No label{ctx.where} is class 0, and they run 1..{t.units - 1} for the {t.units} units of the "
                f"output: the labels look numbered from 1, so unit 0 is never the answer and the last class "
                f"gets a unit that the first should have.",
                f"Number the classes from 0 (y = y - 1) and give the output one unit per class (Dense({t.units - 1}, "
                f"activation='softmax')).",
                {"counts": [int(c) for c in counts], "absent": absent}, t.output.layer if t.output else None)
        if _balanced_by_chance(counts):  # after the 1-based labels: one class missing is told, however few the rows
            continue
        gaps = _ids_with_gaps(ctx, t, counts, ids, kept) if np.any(counts[:int(ids.max()) + 1] == 0) else None
        if gaps is not None:
            return gaps
        # The rare classes only: with 3 classes the three smallest counts included the largest
        # ("the rarest have class 1: 4, class 2: 4, class 0: 392, against 392 for class 0").
        rare = [int(c) for c in np.argsort(counts, kind="stable")[:3] if counts[c] < IMBALANCE_MULTICLASS_RATIO * counts.max()]
        listing = ", ".join(f"class {c}: {int(counts[c])}" for c in rare)
        return Issue(
            f"The classes {'' if len(ctx.targets) == 1 else f'of {t.name} '}are imbalanced{ctx.where}: the rarest have {listing}, against "
            f"{int(counts.max())} for class {int(np.argmax(counts))} ({ratio:.1%} of it). Rare classes "
            f"contribute little to the loss and are easily never predicted.",
            f"{_pass_weights(ctx, t, '{c: n / (K * count_c)}')}, or resample the rare classes, and track "
            "per-class recall or macro-F1 rather than accuracy.",
            {"counts": [int(c) for c in counts], "rarest": rare, "min_max_ratio": float(ratio)},
            t.output.layer if t.output else None)
    return None


def _output_wider_than_labels(ctx: DataContext, t: Target, ids: np.ndarray) -> Issue | None:
    """A softmax with more units than the training labels' classes: ids 0..M for U > M + 1 units,
    a tail of units no row holds, where balanced classes over all U units would leave so many
    empty less than :data:`IMBALANCE_CHANCE` of the time.

    Dense(1000) for labels 0..4 got no word (or "the classes are imbalanced: the rarest have class
    5: 0, class 6: 0" with weights n / (K * count) that divide by 0): its units 5..999 are never the
    answer, yet a fresh softmax spreads over them, starting at ln 1000 = 6.9 for a chance level of ln 5.
    """
    units, top = t.units or 0, int(ids.max())
    if units <= top + 1 or np.count_nonzero(np.bincount(ids)) < 2:
        return None
    empty = units - top - 1
    if math.exp(-len(ids) / units * empty) >= IMBALANCE_CHANCE:  # a few rare classes missing by chance
        return None
    val_ids = class_ids(t, t.y_val) if t.y_val is not None and t.y_val.size else None
    beyond = int(np.count_nonzero(np.unique(val_ids) > top)) if val_ids is not None and val_ids.size else 0
    seen = f" ({beyond} of them only in the validation labels)" if beyond else ""
    # One-hot labels are as wide as the output: a narrower output needs their unused columns cut too,
    # the validation labels' as well where they hold none of those classes (cut alone, y_val no
    # longer fit the output: shape-mismatch); validation_split's rows are y's own.
    one_hot = f", and y = y[:, :{top + 1}]" if t.loss.kind != "sparse" and t.y is not None and t.y.ndim == 2 and t.y.shape[-1] == units else ""
    if one_hot and not beyond and ctx.split_at is None and t.y_val is not None and t.y_val.size and t.y_val.shape[-1] == units:
        one_hot += f", y_val = y_val[:, :{top + 1}]"
    return Issue(
        f"The labels{' of ' + t.name if len(ctx.targets) > 1 else ''}{ctx.where} hold class ids 0..{top} only, but the output "
        f"layer '{t.output.layer if t.output else '?'}' has {units} units: units {top + 1}..{units - 1}{seen} are never the answer in training, "
        f"and a fresh softmax spreads over them too (a first loss near ln {units} = {math.log(units):.2f}, for "
        f"{top + 1} classes).",
        f"If there are {top + 1} classes, give the output one unit per class (Dense({top + 1}){one_hot}); if classes "
        f"{top + 1}..{units - 1} exist, the training rows hold none of them: add rows of those classes.",
        {"max_label": top, "units": units, "empty_units": empty}, t.output.layer if t.output else None)


def _ids_with_gaps(ctx: DataContext, t: Target, counts: np.ndarray, ids: np.ndarray, kept: np.ndarray | None) -> Issue | None:
    """Class ids that skip ids no training row holds, more than balanced classes leave empty by chance;
    ``None`` where the classes held are imbalanced themselves (a rare class missing is imbalance's case).

    Labels {0, 5, 9} under Dense(10) (100 rows each) were told "the classes are imbalanced: the
    rarest have class 1: 0, class 2: 0, class 3: 0, against 104 for class 0" with weights
    n / (K * count) that divide by 0: the classes are balanced, their ids are not numbered 0..K-1.
    Classes held at 20 to 500 rows with id 4 missing were told to renumber alone, their imbalance unsaid
    (where row weights do not even them out already).
    """
    held = np.flatnonzero(counts)
    # Their row weights count too: class_weight (or sample_weight) that evens them out leaves the gap alone.
    if (counts[held].min() < IMBALANCE_MULTICLASS_RATIO * counts[held].max() and not _balanced_by_chance(counts[held])
            and not _weights_balance(ctx, np.searchsorted(held, ids), held.size, binary=False, kept=kept)):
        return None
    top = int(held.max())
    absent = [int(c) for c in np.flatnonzero(counts[:top + 1] == 0)]
    val_ids = class_ids(t, t.y_val) if t.y_val is not None and t.y_val.size else None
    # Ids the validation labels hold are classes that exist, a rare class the training rows miss:
    # renumbered by np.unique(y) and np.searchsorted, validation's id 3 of {0, 1, 2, 4, 5} became class 4.
    in_val = [c for c in absent if val_ids is not None and np.any(val_ids == c)]
    gaps = [c for c in absent if c not in in_val]
    if not gaps:
        return None
    classes = held.size + len(in_val)
    ids = _fmt_ids(gaps)
    seen = f" (ids {_fmt_ids(in_val)} have none either, but the validation labels hold them: classes the training rows miss)" if in_val else ""
    if t.loss.kind == "sparse" or t.y is None or t.y.ndim < 2 or t.y.shape[-1] == 1:
        renumber = ("classes = np.unique(np.concatenate([y, y_val])); y = np.searchsorted(classes, y), y_val = np.searchsorted(classes, y_val)"
                    if in_val else "classes, y = np.unique(y, return_inverse=True), and the same numbers for the validation labels: "
                    "y_val = np.searchsorted(classes, y_val)")
    else:  # one-hot rows: the columns of the classes held
        renumber = f"classes = np.flatnonzero(y.sum(0){' + y_val.sum(0)' if in_val else ''}); y = y[:, classes], y_val = y_val[:, classes]"
    return Issue(
        f"The labels{' of ' + t.name if len(ctx.targets) > 1 else ''}{ctx.where} hold {held.size} of the {len(counts)} class ids "
        f"0..{len(counts) - 1}: ids {ids} have no training row{seen}, so their units are never the answer in training, and a fresh "
        f"softmax spreads over them too. The {held.size} classes held count {int(counts[held].min())} to {int(counts[held].max())} rows.",
        f"If there are {classes} classes, number them 0..{classes - 1} ({renumber}) and give the output one unit per class "
        f"(Dense({classes})); if classes {ids} exist, the training rows hold none of them: add rows of those classes.",
        {"counts": [int(c) for c in counts], "absent": absent, "classes": classes}, t.output.layer if t.output else None)


def _fmt_ids(ids: Sequence[int], limit: int = 6) -> str:
    """``1, 2, 3`` or ``1, 2, 3, 4, 6, 7, ... (12 in all)``."""
    text = ", ".join(str(i) for i in ids[:limit])
    return text + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def _balanced_by_chance(counts: np.ndarray) -> bool:
    """Whether balanced classes drawn at random plausibly count as unevenly as ``counts``: their
    smallest count that low and their largest that high, each at least :data:`IMBALANCE_CHANCE`
    of the time (a Poisson bound, summed over the classes).

    Few rows a class spread by chance alone: 2,400 rows drawn evenly over 900 classes (2.7 a
    class) count 0 to 10, a ratio of 0, and were told "the classes are imbalanced ... class 72: 0"
    with weights n / (K * count) that divide by 0.
    """
    k, n = len(counts), float(counts.sum())
    lam = n / k
    low, high = int(counts.min()), int(counts.max())
    width = int(20 * math.sqrt(lam) + 50)  # the upper tail beyond this adds nothing
    below = _poisson_mass(lam, 0, low)
    above = _poisson_mass(lam, high, high + width)
    return min(1.0, k * below) >= IMBALANCE_CHANCE and min(1.0, k * above) >= IMBALANCE_CHANCE


def _poisson_mass(lam: float, lo: int, hi: int) -> float:
    """The probability that a Poisson count of mean ``lam`` lies in ``lo..hi``."""
    if lo > lam or hi < lam:  # one side of the mean: the terms are monotone, so ~1e5 of them cover the mass
        lo, hi = (lo, min(hi, lo + 100_000)) if lo > lam else (max(lo, hi - 100_000), hi)
    i = np.arange(lo, hi + 1, dtype=np.float64)
    log_terms = -lam + i * math.log(max(lam, 1e-300)) - np.array([math.lgamma(v + 1) for v in i])
    return float(np.exp(log_terms).sum())


def _predicts_per_position(t: Target) -> bool:
    """Whether ``t``'s output predicts per position (``[batch, H, W, k]``, ``[batch, T, k]``) and its
    labels have those positions: a segmentation's masks, whose rows hold no one class."""
    shape = t.output.shape if t.output is not None else None
    return shape is not None and len(shape) >= 3 and t.y is not None and t.y.ndim >= 2 and t.y[0].size > 1


def _position_word(t: Target) -> str:
    """What a position of ``t``'s per-position output is called: a pixel of an image's
    ``[batch, H, W, k]`` (or a volume's), a position of a sequence's ``[batch, T, k]``."""
    return "pixel" if t.output is not None and t.output.shape is not None and len(t.output.shape) >= 4 else "position"


#: The share of a segmentation's labelled pixels under which a class is reported as rare. Far below
#: the row rule's 10%: masks are mostly background as a rule (a healthy 3-class segmentation at
#: 84/9/6% of its pixels was warned), and per-pixel cross-entropy trains on them well; under 2%
#: (a small object in a large image) a model can score 98% by labelling every pixel background.
PIXEL_IMBALANCE_SHARE = 0.02
#: Labels a pixel-imbalance check reads at most (a strided sample of larger masks).
_PIXEL_SAMPLE = 2_000_000


def _position_class_ids(t: Target, kept: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The class id of every labelled position of ``t``'s masks (a strided sample), with the row
    each comes from; ``None`` when they are no class ids (soft or malformed masks).

    The rows, not a count of positions a row: void pixels the loss leaves out (``ignore_class``)
    vary from row to row, and a row's weights repeated over a count made bincount fail.
    ``kept`` (``[rows, T]``, or ``None``) marks the positions the loss reads: a masked tagger's
    real tokens, whose padding's labels weigh nothing.
    """
    assert t.y is not None
    y, kind = t.y, t.loss.kind
    if y.dtype.kind not in "biuf":
        return None
    if kind == "categorical" and t.units and y.shape[-1] == t.units > 1:
        cells = y.reshape(-1, y.shape[-1])
        if not (np.isin(cells, (0, 1)).all() and (cells.sum(axis=1) == 1).all()):
            return None
        ids = np.argmax(cells, axis=1)
        rows = np.arange(ids.size) // (ids.size // len(y))
    elif kind in ("sparse", "binary"):
        ids = y.reshape(-1)
        rows = np.arange(ids.size) // (ids.size // len(y))
    else:
        return None
    if kept is not None and kept.size == ids.size:
        ids, rows = ids[kept.reshape(-1)], rows[kept.reshape(-1)]
        if ids.size == 0:
            return None
    if kind in ("sparse", "binary"):
        if t.loss.ignore_class is not None:  # void pixels the loss leaves out: no class
            labelled = ids != t.loss.ignore_class
            ids, rows = ids[labelled], rows[labelled]
            if ids.size == 0:
                return None
        if kind == "binary" and not np.isin(ids, (0, 1)).all():
            return None
        if not (ids == np.round(ids)).all() or ids.min() < 0:
            return None
        ids = ids.astype(np.int64)
    return ids, rows


def _pixel_imbalance(ctx: DataContext, t: Target) -> Issue | None:
    """A class under :data:`PIXEL_IMBALANCE_SHARE` of a segmentation's labelled pixels.

    A segmentation's masks hold a class per pixel, so no row has one class and the row rule read
    nothing: 95% background pixels, the classic case, got no word, though a model labelling every
    pixel background scores 95% accuracy. Neither class_weight nor per-pixel sample_weight can
    weigh pixels here (fit takes one weight per row), so the advice is a loss that weighs them.
    """
    if t.loss.kind is None or "Focal" in t.loss.name:  # a focal loss weighs the rare pixels already
        return None
    assert t.y is not None
    # Whole rows, evenly strided, up to _PIXEL_SAMPLE label values: the shares of 8M pixels read
    # in full took ~0.7 s of each fit's start for one-hot masks.
    step = max(1, math.ceil(t.y.size / _PIXEL_SAMPLE))
    kept = None
    if ctx.loss_positions is not None and len(ctx.targets) == 1 and ctx.loss_positions.shape == t.y.shape[:2]:
        kept = ctx.loss_positions[::step]
    found = _position_class_ids(dataclasses.replace(t, y=t.y[::step]), kept)
    if found is None:
        return None
    ids, rows = found
    w = ctx.sample_weight
    weights = w[::step][rows] if w is not None and w.shape == (len(t.y),) else None
    k = max(int(ids.max()) + 1, 2, t.units or 1)
    counts = np.bincount(ids, weights=weights, minlength=k).astype(np.float64)
    total = counts.sum()
    if total <= 0 or np.count_nonzero(counts) < 2:
        return None
    shares = counts / total
    layer = t.output.layer if t.output else None
    # A sequence tagger's (n, T) labels against [batch, T, k] take the same path: its timesteps
    # were told of "pixels", "pixel accuracy" and "one-hot masks".
    px = _position_word(t)
    pixels = f"the {px}s of {t.name}{ctx.where}" if len(ctx.targets) > 1 or ctx.where else f"the labelled {px}s"
    metric = ("keras.metrics.BinaryIoU(target_class_ids=[1])" if t.loss.kind == "binary" else
              f"keras.metrics.OneHotMeanIoU(num_classes={k})" if t.loss.kind == "categorical" else
              f"keras.metrics.MeanIoU(num_classes={k}, sparse_y_pred=False)")
    measure = f"judge the model by IoU ({metric}, and each class's IoU) rather than {px} accuracy"
    unsupported = (f"class_weight and per-{px} sample_weight are not taken for a model that predicts per position (fit weighs rows, "
                   f"each row's weight on all its {px}s)")
    if t.loss.kind == "binary" and (t.units or 1) == 1:
        minority = int(np.argmin(counts[:2]))
        share = float(shares[minority])
        if share >= PIXEL_IMBALANCE_SHARE:
            return None
        bias = math.log(max(float(shares[1]), 1e-6) / max(float(shares[0]), 1e-6))
        return Issue(
            f"Class {minority} is {share:.1%} of {pixels}: a model that labels every {px} {1 - minority} already scores "
            f"{1 - share:.1%} {px} accuracy, and the per-{px} loss is dominated by class {1 - minority}'s {px}s.",
            f"Weigh the rare {px}s in the loss, as {unsupported}: loss=keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, "
            f"alpha={1 - share:.2g}) (alpha weighs the 1s), or keras.losses.Dice() (alone or added to the cross-entropy); {measure}; "
            f"and initialise the output bias to log(p / (1 - p)) = {bias:.2f}.",
            {"pixel_shares": [float(v) for v in shares[:2]], "minority_class": minority, "minority_share": share}, layer)
    ratio = float(counts[counts > 0].min() / counts.max())
    if shares.min() >= PIXEL_IMBALANCE_SHARE:
        return None
    rare = [int(c) for c in np.argsort(counts, kind="stable")[:3] if shares[c] < PIXEL_IMBALANCE_SHARE]
    listing = ", ".join(f"class {c}: {shares[c]:.1%}" for c in rare)
    alpha = np.round(np.clip(1.0 / np.maximum(shares, 1e-3) / k, 0.0, None) / max(1e-12, float(np.max(1.0 / np.maximum(shares, 1e-3) / k))), 2)
    return Issue(
        f"The classes of {pixels} are imbalanced: the rarest have {listing}, against {shares.max():.1%} for class "
        f"{int(np.argmax(counts))}. Rare classes' {px}s contribute little to the per-{px} loss, and a model that "
        f"never predicts them still scores {shares.max():.1%} {px} accuracy.",
        f"Weigh the rare classes' {px}s in the loss, as {unsupported}: loss=keras.losses.CategoricalFocalCrossentropy(alpha="
        f"{[float(a) for a in alpha]})"
        + ("" if t.loss.kind == "categorical" else f" on one-hot {'masks' if px == 'pixel' else 'labels'} ({t.name} = keras.utils.to_categorical({t.name}, {k}))")
        + f", or keras.losses.Dice(){'' if t.loss.kind == 'categorical' else ' on them'} (alone or added to the cross-entropy); {measure}.",
        {"pixel_shares": [float(v) for v in shares], "rarest": rare, "min_max_ratio": ratio}, layer)


def _multilabel_imbalance(ctx: DataContext, t: Target) -> Issue | None:
    """Label columns whose rarer value (1, mostly) is under 10% of the (weighted) rows.

    A multilabel target was never judged: labels at 1% positives, whose binary_accuracy reads 99%
    for a model that always answers 0, got no word. class_weight reads one class a row, which a
    multi-hot row has not (fit refuses it), so the advice is per label: biases, metrics, loss.
    """
    assert t.y is not None
    y = t.y.reshape(len(t.y), -1)
    w = ctx.sample_weight if ctx.sample_weight is not None and ctx.sample_weight.shape == (len(y),) and ctx.sample_weight.sum() > 0 else None
    if _predicts_per_position(t):
        # Masks of several labels per pixel ((n, H, W, L)): each label's pixels pooled, not every
        # pixel a label column of its own ("1499 of the 3072 label columns" for 3 labels of 32x32).
        y = t.y.reshape(-1, t.y.shape[-1])
        w = np.repeat(w, len(y) // len(t.y)) if w is not None else None
    units = f"{_position_word(t)}s" if _predicts_per_position(t) else "rows"
    if t.loss.kind != "binary" or y.shape[1] < 2 or not np.isin(y, (0, 1)).all():
        return None
    p = np.average(y, axis=0, weights=w)
    minority = np.minimum(p, 1.0 - p)
    # A column of one value is nothing to weigh, and nothing to learn: it is named apart (not for a
    # dataset's first batches, which a rare label may miss).
    rare = [int(k) for k in np.argsort(minority, kind="stable") if 0.0 < minority[k] < IMBALANCE_BINARY_SHARE]
    constant = [] if ctx.where else [int(k) for k in np.flatnonzero(minority == 0.0)]
    # Under sample_weight, a column's other value may lie in rows that weigh 0: "0 in every row" was
    # said of a label whose 5 rows of 1 weighed 0. Those rows are counted in the message.
    unweighted = {k: int(np.count_nonzero(y[:, k] != (p[k] > 0.5))) for k in constant}
    # The validation rows' count of the other value: a column constant in training that validation
    # holds both values of is a split's doing, and was told to be dropped "if meant to be constant".
    # Not a column whose training rows hold the other value at weight 0: no split put it apart, and
    # "a split that put every 1 of it on the validation side" was said beside "its 5 of 1 weighing 0".
    in_val = _other_value_in_validation(t, p, [k for k in constant if not unweighted[k]])
    split = ctx.split_at is not None
    if not rare:
        return _constant_label_columns(t, y.shape[1], p, constant, units, unweighted, in_val, split) if constant else None
    listing = ", ".join(f"label {k}: {100 * p[k]:.3g}% positive" for k in rare[:5]) + (f" and {len(rare) - 5} more" if len(rare) > 5 else "")
    k = rare[0]
    # A mask's labels are its last axis: y_train.mean(0) there is a mean per pixel, no bias's shape.
    prior = f"y_train.reshape(-1, {y.shape[1]}).mean(0)" if _predicts_per_position(t) else "y_train.mean(0)"
    clipped = np.clip(p, 1e-3, 1 - 1e-3)
    log_odds = np.log(clipped / (1 - clipped))
    # Output biases already at the labels' log-odds (as this advice says to set them) were told to
    # set them all the same: the advice read no bias, and a mean bias tells nothing of one a unit.
    start = ctx.output_bias_values.get(t.output.layer) if t.output is not None else None
    at_log_odds = start is not None and start.shape == p.shape and bool(np.all(np.abs(start[rare] - log_odds[rare]) < 0.05))
    # A recipe's user cannot call bias.assign: the values themselves, as its output layer takes them.
    values = (f"[{', '.join(f'{v:.2f}' for v in log_odds)}]" if len(p) <= _RECIPE_BIAS_LABELS
              else f"one value a label, log(p / (1 - p)) of each of the {len(p)} columns' share of 1s")
    advice = ["Judge the model by AUC(multi_label=True) and each label's precision and recall rather than binary_accuracy (in a "
              "recipe, metrics: [{name: auc, multi_label: true}])"]
    if not at_log_odds:
        advice.append(f"initialise the output biases to each label's log(p / (1 - p)) (p = np.clip({prior}, 1e-3, 1 - 1e-3), clipped for a "
                      "label column without positives; model.layers[-1].bias.assign(np.log(p / (1 - p))) after building it; in a recipe, "
                      f"bias_initializer: {{name: constant, value: {values}}} on the output layer)")
    # A focal loss weighs the hard rows, the rare labels' 1s mostly, already (as _pixel_imbalance
    # reads it): the run that followed this advice was told to switch to the loss it had.
    focal = "Focal" in t.loss.name
    if not focal:
        advice.append("to weigh the 1s up, use loss=BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.9) (alpha weighs the 1s: "
                      "its default 0.25 weighs them down; in a recipe, loss: {name: binary_focal_crossentropy, apply_class_balancing: true, "
                      "alpha: 0.9}) or a loss of your own (class_weight reads one class a row, which a multilabel row has not)")
    issue = Issue(
        f"{len(rare)} of the {y.shape[1]} label columns of {t.name}{ctx.where} {'is' if len(rare) == 1 else 'are'} imbalanced, the rarer value under "
        f"{IMBALANCE_BINARY_SHARE:.0%} of the {units} ({listing}): always answering the common value already scores "
        f"{1 - minority[k]:.1%} binary accuracy on label {k}" + ("." if focal else f", and its rare {units} weigh little in the loss."),
        "; ".join(advice) + ".",
        {"rare_labels": rare, "positive_shares": [float(p[c]) for c in rare]}, t.output.layer if t.output else None)
    if constant:
        also = _constant_label_columns(t, y.shape[1], p, constant, units, unweighted, in_val, split)
        issue = dataclasses.replace(issue, message=f"{issue.message} {also.message}", advice=f"{issue.advice} {also.advice}",
                                    evidence={**issue.evidence, **also.evidence})
    return issue


def _other_value_in_validation(t: Target, p: np.ndarray, constant: list[int]) -> dict[int, tuple[int, int]]:
    """For the columns of ``constant`` (one value in the training rows, whose share of 1s is ``p``),
    ``{column: (validation rows (pixels) of the other value, validation rows (pixels))}``, those
    holding it only; ``{}`` without validation labels of the same columns, all 0 or 1."""
    if not constant or t.y_val is None or not len(t.y_val) or t.y is None:
        return {}
    v = t.y_val.reshape(-1, t.y_val.shape[-1]) if _predicts_per_position(t) else t.y_val.reshape(len(t.y_val), -1)
    if v.shape[1] != len(p) or not np.isin(v, (0, 1)).all():
        return {}
    counts = {k: int(np.count_nonzero(v[:, k] != (p[k] > 0.5))) for k in constant}
    return {k: (n, len(v)) for k, n in counts.items() if n}


def _constant_label_columns(t: Target, labels: int, p: np.ndarray, constant: list[int], units: str,
                            others: dict[int, int], in_val: dict[int, tuple[int, int]] | None = None, split: bool = False) -> Issue:
    """Multilabel label columns of one value in every training row: nothing to learn for them.

    A label 0 in every training row (or 1 in every one) got no word: the model has nothing to
    learn for it, and ``AUC(multi_label=True)`` scores it 0 (no positives or no negatives), so
    perfect predictions on 2 labels beside one constant read 0.667. ``others``: a column's rows of
    the other value, which weigh 0 where it is one value under the row weights only. ``in_val``:
    the columns whose other value the validation rows hold (see :func:`_other_value_in_validation`),
    a split's doing, not a constant label: 3 validation rows of 60 holding the 1s of a label 0 in
    all 240 training rows were told to drop it "if meant to be constant" (``split``:
    ``validation_split`` held them out).
    """
    in_val = in_val or {}
    listing = ", ".join(f"label {k}: {'1' if p[k] > 0.5 else '0'} in every {units[:-1]}" + (
        f" of nonzero weight, its {others[k]} of {'0' if p[k] > 0.5 else '1'} weighing 0" if others.get(k) else "")
        for k in constant[:5]) + (
        f" and {len(constant) - 5} more" if len(constant) > 5 else "")
    # Rows of the other value that weigh 0 exist: "one value in all the training rows" said they did not.
    weighted = " of nonzero weight" if any(others.get(k) for k in constant) else ""
    message = (f"{len(constant)} of the {labels} label columns of {t.name} {'holds' if len(constant) == 1 else 'hold'} one value in all the training {units}{weighted} "
               f"({listing}): the model has nothing to learn for {'it' if len(constant) == 1 else 'them'}, and AUC(multi_label=True) scores "
               f"{'it' if len(constant) == 1 else 'each'} 0 in its mean over the labels (perfect predictions on 2 labels beside one such read 0.667).")
    fixed = [k for k in constant if k not in in_val]
    drop = f"drop them and their output units (keep = [k for k in range({labels}) if k not in {fixed}]; y = y[:, keep])"
    advice = (f"Check those label columns (a filter that kept one value, rows sorted by label before the split); if they are meant to be "
              f"constant, {drop}.")
    evidence: dict = {"constant_labels": constant}
    if in_val:
        apart = sorted(in_val)
        val_name = validation_name(t.name)
        held = ", ".join(f"label {k}: {'0' if p[k] > 0.5 else '1'} in {n} of {m}" for k, (n, m) in in_val.items())
        first = apart[0]
        message += (f" The validation labels {val_name} hold the other value of {'it' if len(apart) == 1 else 'them'} "
                    f"({held} validation {units}): not a constant label but a split that put every "
                    f"{'1' if p[first] <= 0.5 else '0'} of it on the validation side, so val_loss and the validation AUC measure what no "
                    "training row shows.")
        # validation_split takes the last rows as they stand: the shuffle has to come before fit.
        how = "before fit, as validation_split holds out the LAST rows before any shuffling" if split else "before splitting them"
        advice = (f"Re-draw the split so that label {first}'s {'1s' if p[first] <= 0.5 else '0s'} fall on both sides: shuffle x and y "
                  f"together with p = np.random.default_rng(0).permutation(len(x)); x, y = x[p], y[p] {how}; or split stratified on "
                  f"that label (sklearn's train_test_split(x, y, test_size=0.2, stratify=y[:, {first}]))"
                  + (f"; keep {'that column' if len(apart) == 1 else 'those columns'}." if not fixed else
                     f". For the other columns: {advice[0].lower()}{advice[1:]}"))
        evidence["validation_other_value"] = {int(k): int(n) for k, (n, _) in in_val.items()}
    return Issue(message, advice, evidence, t.output.layer if t.output else None)


#: Label columns up to which ``class-imbalance`` writes a recipe's output biases value by value.
_RECIPE_BIAS_LABELS = 20


def sample_weight_all_zero(ctx: DataContext) -> Issue | None:
    """Training rows that all weigh 0: the loss and every gradient are 0, nothing trains; or
    validation rows that all weigh 0: every validation value reads a perfect 0."""
    w = ctx.sample_weight
    if w is None or ctx.where or w.size == 0 or np.any(w):
        return _validation_weights_all_zero(ctx)
    return Issue(
        f"Every one of the {w.size} rows has sample_weight 0, so every batch's loss and gradient are 0: "
        "the model would not change, while the loss reads a perfect 0.",
        "Check how the weights were built (a mask inverted, weights cast to int); pass positive weights for the rows to learn from.",
        {"rows": int(w.size)})


def _validation_weights_all_zero(ctx: DataContext) -> Issue | None:
    w = ctx.val_sample_weight
    if w is None or ctx.val_where or w.size == 0 or np.any(w):  # a dataset's first batches are not all its rows
        return None
    # Keras computes val_loss 0.0 then, without a word; early stopping reads it as the best epoch.
    return Issue(
        f"Every one of the {w.size} validation rows has sample_weight 0, so val_loss and every validation metric "
        "would read 0: a perfect score that early stopping and the diagnosis would take at its word.",
        "Pass positive weights for the validation rows to count, or validation_data=(x_val, y_val) without weights.",
        {"validation_rows": int(w.size)})


def sample_weight_negative(ctx: DataContext) -> Issue | None:
    """Training rows with a negative weight: the optimizer then raises their loss; or validation
    rows with one: val_loss can go below 0, a better-than-perfect score early stopping believes."""
    w = ctx.sample_weight
    negative = int(np.sum(w < 0)) if w is not None and w.size else 0
    if not negative:
        return _validation_weights_negative(ctx)
    return Issue(
        f"{negative} of the {w.size} training rows{ctx.where} have a negative sample_weight (the lowest {format_number(float(w.min()))}): "
        "gradient descent then makes their loss larger, not smaller, and the epoch loss can go below 0.",
        "Weights scale each row's share of the loss: use 0 to leave a row out and positive values to weigh it (np.abs(w) or np.clip(w, 0, None) if "
        "the sign came from a subtraction).",
        {"negative_rows": negative, "min_weight": float(w.min())})


def _validation_weights_negative(ctx: DataContext) -> Issue | None:
    w = ctx.val_sample_weight
    negative = int(np.sum(w < 0)) if w is not None and w.size else 0
    if not negative:
        return None
    return Issue(
        f"{negative} of the {w.size} validation rows{ctx.val_where} have a negative sample_weight (the lowest {format_number(float(w.min()))}): "
        "they subtract their loss from val_loss, which can go below 0, a score early stopping and the diagnosis would believe.",
        "Use 0 to leave a validation row out and positive values to weigh it (np.abs(w) or np.clip(w, 0, None) if the sign came from a subtraction).",
        {"negative_validation_rows": negative, "min_weight": float(w.min())})


def few_training_rows(ctx: DataContext) -> Issue | None:
    """A training split too small to learn from: under 20 rows, or under 2 per class."""
    rows = _training_rows(ctx)
    needed, classes = _rows_needed(ctx)
    if rows is None or rows == 0 or rows >= needed:
        return None
    per_class = f" for {classes} classes" if MIN_ROWS_PER_CLASS * classes > MIN_TRAIN_ROWS else ""
    held = len(ctx.x_val[0]) if ctx.x_val else 0
    held_out = f" ({held} more row{'s are' if held != 1 else ' is'} held out for validation)" if held else ""
    return Issue(
        f"The training data has only {rows} row{'s' if rows != 1 else ''}{held_out}, fewer than {needed}"
        f"{per_class}: a model fitted to so few rows memorises them, and its loss, its metrics and "
        f"their diagnosis are mostly noise.",
        "Train on more rows: more data (data.rows for a generated set) or a smaller validation split "
        "(training.validation_split in a recipe, validation_split in fit); far more than "
        f"{needed} for a model worth keeping.",
        {"training_rows": rows, "validation_rows": held, "minimum": needed, "classes": classes})


def batch_larger_than_data(ctx: DataContext) -> Issue | None:
    """A batch_size at least twice the training rows: every epoch is one step of all the rows."""
    rows = _training_rows(ctx)
    if rows is None or ctx.batch_size is None or ctx.batch_size < BATCH_OVER_ROWS * rows:
        return None
    if rows < _rows_needed(ctx)[0]:  # few-training-rows says it: more rows, not a smaller batch
        return None
    smaller = 32 if rows >= 128 else max(1, rows // 4)
    return Issue(
        f"batch_size {ctx.batch_size} is {ctx.batch_size / rows:.3g}x the {rows} training rows: every batch "
        f"is all {rows} rows, so each epoch is a single step, one update of the weights.",
        f"Use a batch_size well below {rows}, such as {smaller} (training.batch_size in a recipe, "
        f"batch_size in fit), so that each epoch makes several updates; for full-batch training on "
        f"purpose, set it to {rows} and give it many more epochs.",
        {"batch_size": ctx.batch_size, "training_rows": rows})


def stateful_shuffled(ctx: DataContext) -> Issue | None:
    """Numpy rows shuffled (``shuffle=True`` or ``"batch"``) into a model of ``stateful=True``
    recurrent layers, which carry each row's final state into the row at its index in the next
    batch: a shuffle pairs each row with a random one's state. ``model.fit`` shuffles them too,
    without a word."""
    if not ctx.stateful_layers or not ctx.shuffle:
        return None
    names = ", ".join(f"'{name}'" for name in ctx.stateful_layers)
    how = "the rows of each batch among themselves" if ctx.shuffle == "batch" else "the rows into a new order every epoch"
    return Issue(
        f"{names} {'is' if len(ctx.stateful_layers) == 1 else 'are'} stateful: each row's final state is the initial state of the "
        f"row at its index in the next batch, but shuffle={ctx.shuffle!r} shuffles {how}, so each row starts from an unrelated "
        "row's state.",
        "Pass shuffle=False to fit, with the rows ordered so that row i of each batch continues row i of the batch before "
        "(training.shuffle: false in a recipe); or make the layers stateful=False if the rows are independent sequences.",
        {"layers": list(ctx.stateful_layers), "shuffle": ctx.shuffle})


def batchnorm_batch_of_one(ctx: DataContext) -> Issue | None:
    """Batches of one row through a BatchNormalization layer that normalises over the batch's rows alone.

    Over one row every value is its own batch mean, so the layer outputs its beta whatever the
    input, passes no gradient below it, and its moving variance shrinks towards 0: batch_size 1
    on a Dense -> BatchNormalization -> ReLU model sat at chance (0.69) for 10 epochs, its
    validation loss at 4.3-6.7 (seeds 0-2), and was told the labels were unpredictable. Batches
    of 2 still train (noisily), and a last partial batch of one row among full ones did no harm.
    """
    if not ctx.batch_norms:
        return None
    if ctx.where:
        one_row = bool(ctx.batch_rows) and all(rows == 1 for rows in ctx.batch_rows)
    else:
        rows = _training_rows(ctx)
        one_row = ctx.batch_size == 1 and rows is not None and rows > 1
    if not one_row:
        return None
    layers = ", ".join(repr(name) for name in ctx.batch_norms)
    size = f"the batches{ctx.where} hold one row each" if ctx.where else "batch_size is 1"
    return Issue(
        f"{size}, and BatchNormalization ({layers}) normalises each feature over the batch's rows: over one row "
        f"every value is its own mean, so the layer outputs the same value (its beta) for every input, no gradient "
        f"reaches the layers below it, and its moving variance, which validation and predict use, shrinks towards 0. "
        f"The model cannot learn, and the validation loss goes far above the training loss.",
        "Use batches of 16 rows or more (batch_size=32; dataset.batch(32); in a recipe, training.batch_size: 32); to train "
        "on single rows, use LayerNormalization (it normalises each row by itself) or no normalisation layer (in a recipe, "
        "remove the {type: batchnorm} layer).",
        {"batch_size": 1, "batch_norm_layers": list(ctx.batch_norms)}, ctx.batch_norms[0])


def _rows_needed(ctx: DataContext) -> tuple[int, int]:
    """``(training rows needed, classes)``: 20 rows, or 2 per class of a classifier if more."""
    classes = max((_class_count(t) for t in ctx.targets), default=0)
    return max(MIN_TRAIN_ROWS, MIN_ROWS_PER_CLASS * classes), classes


def _training_rows(ctx: DataContext) -> int | None:
    """The training rows of numpy data, or ``None`` for a dataset (only its first batches are read)."""
    if ctx.where or not ctx.xs:
        return None
    return len(ctx.xs[0])


def _class_count(t: Target) -> int:
    """The classes a single-label classifier tells apart (its units, or 2 for binary); 0 otherwise."""
    if t.task == "binary":
        return 2
    if t.task == "multiclass":
        return t.units if t.units and t.units > 1 else 0
    return 0


def _labels(ctx: DataContext, t: Target) -> str:
    """``the labels``, or ``the labels of y['a']`` when the model has several outputs."""
    return "the labels" if len(ctx.targets) == 1 else f"the labels of {t.name}"


def _pass_weights(ctx: DataContext, t: Target, weights: str) -> str:
    """The advice to weigh the classes: ``class_weight=...``, which fit refuses for a model with
    several outputs (as model.fit does); there, row weights from that output's labels."""
    if len(ctx.targets) == 1:
        return f"Pass class_weight={weights} to fit (training.class_weight in a recipe)"
    return (f"Pass sample_weight with each row weighted by its class in {t.name}, as class_weight={weights} would weigh it "
            f"(class_weight applies to a model with one output only)")


def _weights_balance(ctx: DataContext, ids: np.ndarray, k: int, *, binary: bool, kept: np.ndarray | None = None) -> bool:
    """Whether the rows' weights (class_weight or sample_weight) already even out the classes
    (``kept``: the rows ``ids`` holds, where the loss leaves some out).

    Then the imbalance is handled: advising ``class_weight=...`` to a run that passes it was
    noise. The weighted class totals must pass the same thresholds as the counts.
    """
    w = ctx.sample_weight
    if w is not None and kept is not None and w.shape == kept.shape:
        w = w[kept]
    if w is None or w.shape != (len(ids),):
        return False
    totals = np.bincount(ids, weights=w, minlength=k)
    if binary:
        return totals[:2].sum() > 0 and float(totals[:2].min() / totals[:2].sum()) >= IMBALANCE_BINARY_SHARE
    return float(totals.min() / max(float(totals.max()), 1e-12)) >= IMBALANCE_MULTICLASS_RATIO
