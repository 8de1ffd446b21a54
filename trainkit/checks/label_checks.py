"""Rules on the labels against the task, the loss and the output layer: their format
(``label-format``), a training split of one class (``single-class``) and regression targets a
bounded output cannot reach or the loss cannot take (``labels-out-of-range``).

Apart from the other rules: these read only the targets, each with its output and loss.
"""

from __future__ import annotations

import math

import numpy as np

from trainkit.checks.compatibility import (
    CLASSIFICATION_LOSSES,
    CLASSIFICATION_TASKS,
    MAPE_NAMES,
    MSLE_NAMES,
    Issue,
)
from trainkit.checks.data_context import (
    DataContext,
    Target,
    class_ids,
    format_number,
    format_shape,
    is_integral,
    is_numeric,
    label_map,
    strided_rows,
    validation_name,
)
from trainkit.checks.model_inspect import UNKNOWN
from trainkit.checks.row_checks import MIN_TRAIN_ROWS

#: More distinct whole-number labels than this read as a quantity rather than class ids.
_MANY_CLASSES = 50


def _sample_values(y: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a strided sample of ``y`` (every value, in practice)."""
    return np.unique(strided_rows(y.reshape(-1), 200_000))


def _distinct(y: np.ndarray, limit: int = 8) -> np.ndarray:
    """The first ``limit + 1`` of :func:`_sample_values` (enough to show, and to tell there are more)."""
    return _sample_values(y)[: limit + 1]


def _mostly_whole(y: np.ndarray) -> bool:
    """Whether most of ``y``'s values (a strided sample) are whole numbers: class ids with some
    fractions among them, as interpolation leaves them."""
    sample = strided_rows(y.reshape(-1), 200_000)
    return float(np.mean(np.mod(sample, 1) == 0)) >= 0.5


def _fmt_values(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(format_number(float(v)) for v in values[:limit])
    return "{" + shown + (", ..." if len(values) > limit else "") + "}"


def _minus(name: str, value: float) -> str:
    """``(y - 3)`` / ``(y + 2.5)`` / ``y`` for code in messages."""
    if value == 0:
        return name if name else "()"
    return f"({name} {'-' if value > 0 else '+'} {format_number(abs(value))})"


def label_format(ctx: DataContext) -> Issue | None:
    """Labels that do not fit the loss: integer vs one-hot, outside {0, 1}, ids >= units, y/255;
    for any other task or loss, targets that are not numbers."""
    for t in ctx.targets:
        classification = t.task in CLASSIFICATION_TASKS and t.loss.kind in CLASSIFICATION_LOSSES
        # The validation labels too: a bad label there corrupts val_loss without a sound.
        for name, y, where in ((t.name, t.y, ctx.where), (validation_name(t.name), t.y_val, ctx.val_where)):
            if y is None:
                continue
            issue = _label_issue(t, y, name, bool(where)) if classification else _target_issue(t, y, name)
            if issue is not None:
                return issue
    return None


def _target_issue(t: Target, y: np.ndarray, name: str) -> Issue | None:
    """Targets of a regression (or a loss the label checks do not read) that are not numbers:
    else a TensorFlow error at the first step, casting text to float."""
    if y.dtype.kind in "biuf" or t.loss.name == "None":  # an output without a loss never reads its targets
        return None
    return Issue(f"{name} holds {y.dtype} values, not numbers; {t.loss.describe()} needs numeric targets.",
                 f"Convert numbers read as text with {name}.astype('float32'); encode categories as class ids 0..K-1 for a classification task.",
                 {"dtype": str(y.dtype)}, t.output.layer if t.output else None)


def _dataset_labels(t: Target, mode: str, mapped: str) -> str:
    """How to make a dataset's labels over, for labels read from a dataset's batches, which numpy's
    ``y = y.argmax(axis=-1)`` cannot be applied to. ``mode``: the ``label_mode`` of
    ``image_dataset_from_directory`` that gives them; ``mapped``: the labels made in a ``map``.

    The map passes a sample weight on (``*w``): ``lambda x, y`` raised a TypeError on a dataset
    of ``(x, y, sample_weight)`` elements; and one output's of several, its entry (label_map)."""
    return (f"where the dataset is made: label_mode='{mode}' in keras.utils.image_dataset_from_directory, "
            f"or {label_map(t, mapped)}")


#: Text labels named in a message, at most.
_TEXT_CLASSES_SHOWN = 10


def _text_classes(y: np.ndarray) -> list[str] | None:
    """The distinct text labels of ``y``, sorted (``["neg", "pos"]``; a dataset's come as bytes),
    or ``None`` for labels that are not all text or hold more classes than a message shows."""
    if y.dtype.kind not in "OSU":
        return None
    values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in np.ravel(y)]
    if not all(isinstance(v, str) for v in values):
        return None
    classes = sorted({str(v) for v in values})  # np.str_ would print as np.str_('neg')
    return classes if len(classes) <= _TEXT_CLASSES_SHOWN else None


def _label_issue(t: Target, y: np.ndarray, name: str, dataset: bool = False) -> Issue | None:
    """:func:`label_format` for one classification target's labels ``y`` (``name``: how to call
    them; ``dataset``: read from a dataset's first batches)."""
    kind, loss = t.loss.kind, t.loss.describe()
    layer = t.output.layer if t.output else None
    units = t.units
    if y.dtype.kind not in "biuf":
        classes = _text_classes(y)
        what = f"text labels ({', '.join(map(repr, classes))})" if classes else f"{y.dtype} values"
        fix = "Encode the classes as integers 0..K-1: classes, y = np.unique(y, return_inverse=True)."
        if dataset and classes:
            # numpy's np.unique cannot reach a dataset's labels: 'pos'/'neg' batches were told it.
            fix = ("Encode the classes as integers 0..K-1 where the dataset is made: lookup = keras.layers.StringLookup("
                   f"vocabulary={classes!r}, num_oov_indices=0) (every class, in a fixed order), then "
                   f"{label_map(t, 'lookup(y)')} (*w keeps a dataset's sample weights).")
        return Issue(f"{name} holds {what}, not numbers; {loss} needs numeric labels.", fix, {"dtype": str(y.dtype)}, layer)
    if y.size == 0:
        return None
    lo, hi = float(np.min(y)), float(np.max(y))
    logits = t.loss.from_logits
    one_col = y.ndim == 1 or y.shape[-1] == 1
    if kind in ("categorical", "kl", "categorical_hinge") and units and units > 1:
        if one_col:
            return Issue(
                f"{name} holds one class id per sample (shape {format_shape(y.shape)}, values {format_number(lo)}..{format_number(hi)}) "
                f"but {loss} expects one-hot rows of length {units}.",
                f"Use SparseCategoricalCrossentropy(from_logits={logits}) for integer labels, or one-hot encode them"
                + (" " + _dataset_labels(t, "categorical", f"tf.one_hot(tf.cast(tf.reshape(y, [-1]), 'int32'), {units})") + "." if dataset else
                   f": y = keras.utils.to_categorical(y, {units}) (in a recipe, loss: sparse_categorical_crossentropy, "
                   f"or data.one_hot: true)."),
                {"y_min": lo, "y_max": hi, "units": units}, layer)
        if lo < 0 or hi > 1:
            return Issue(f"{name} has values from {format_number(lo)} to {format_number(hi)} but {loss} expects one-hot "
                         f"(or probability) rows with values in [0, 1].",
                         "One-hot encode the class ids: y = keras.utils.to_categorical(ids, K).",
                         {"y_min": lo, "y_max": hi}, layer)
        sums = y.reshape(-1, y.shape[-1]).sum(axis=1, dtype=np.float64)
        bad = np.abs(sums - 1.0) > 1e-3
        if bad.any():
            multi = float(sums.max()) > 1.001
            # The row shown is one of the kind the message names: multi-hot rows beside all-zero
            # ones read "row 0 sums to 0: several 1s (multi-hot)".
            count, first = int(bad.sum()), int(np.argmax(sums > 1.001 if multi else bad))
            why = ("several 1s (multi-hot)" if multi else "no 1 (all zeros)")
            fix = ("If a sample can have several labels, use task='multilabel' with sigmoid outputs and "
                   "BinaryCrossentropy; otherwise make each row contain exactly one 1."
                   if multi else "Make each row contain exactly one 1 (drop unlabelled rows).")
            return Issue(f"{count} rows of {name} do not sum to 1 (the first, row {first}, sums to "
                         f"{format_number(float(sums[first]))}: {why}); {loss} expects exactly one class per row.",
                         fix, {"rows": count, "first_row": first}, layer)
        return None
    if kind == "sparse" and units:
        if y.ndim >= 2 and y.shape[-1] == units and units > 1:
            multi_hot = _multi_hot_rows(y)
            if multi_hot:
                # Multi-hot rows were told "one-hot rows" and y.argmax(axis=-1), which keeps the first
                # label of each row and drops the others without a word.
                return Issue(
                    f"{name} holds multi-hot rows (shape {format_shape(y.shape)}; {multi_hot} rows hold several 1s) but {loss} "
                    "expects one integer class id per sample: a row of several labels has none.",
                    "If a sample can have several labels, use task='multilabel' with BinaryCrossentropy() and "
                    f"Dense({units}, activation='sigmoid') (in a recipe, task: multilabel, loss: binary_crossentropy with "
                    f"{{type: dense, units: {units}, activation: sigmoid}}); y.argmax(axis=-1) would keep one label a row and drop the others.",
                    {"y_shape": list(y.shape), "multi_hot_rows": multi_hot}, layer)
            return Issue(
                f"{name} holds one-hot rows (shape {format_shape(y.shape)}) but {loss} expects one integer "
                f"class id per sample.",
                f"Use CategoricalCrossentropy(from_logits={logits}) for one-hot labels, or convert them"
                + (" " + _dataset_labels(t, "int", "tf.argmax(y, axis=-1)") + "." if dataset else
                   ": y = y.argmax(axis=-1) (in a recipe, loss: categorical_crossentropy, or data.one_hot: false)."),
                {"y_shape": list(y.shape)}, layer)
        per_position = y.ndim >= 2 and y[0].size > 1  # masks: a class id a pixel
        if t.loss.ignore_class is not None:
            # The loss leaves the ignored label out (a segmentation's void pixels, 255 or -1): read as
            # a class id, 255 was refused as "ids 0..255 for 3 units" in masks Keras trains on as they are.
            kept = y[y != t.loss.ignore_class]
            if kept.size == 0:
                return None
            y, lo, hi = kept, float(np.min(kept)), float(np.max(kept))
        if not is_integral(y):
            values = _distinct(y)
            if hi <= 1.0 and is_integral(np.round(y * 255.0, 3)):
                return Issue(
                    f"{name} holds non-integer class labels {_fmt_values(values)}: they look like class "
                    f"ids divided by 255. {loss} needs the integer ids 0..{units - 1}.",
                    "Undo the division (y = np.rint(y * 255).astype('int64')); scale x, not y.",
                    {"y_min": lo, "y_max": hi}, layer)
            if per_position and lo >= 0 and hi <= units - 1 and _mostly_whole(y):
                # Masks resized with (bi)linear interpolation: whole class ids inside each region,
                # fractions along its edges. np.unique(y, return_inverse=True) made every fraction
                # a class of its own (65 "classes" for 3).
                return Issue(
                    f"{name} holds class ids with fractions between them {_fmt_values(values)}: masks of class ids resized "
                    f"(or augmented) with linear interpolation, which blends neighbouring ids along each region's edges. "
                    f"{loss} needs the integer class ids 0..{units - 1} at every position.",
                    f"Resize (and rotate, shift, zoom) masks with nearest-neighbour interpolation: tf.image.resize({name}, size, "
                    f"method='nearest'), interpolation='nearest' in Keras' augmentation layers, from the original masks; rounding what you have, "
                    f"{name} = np.rint({name}).astype('int64'), is exact for two classes only (between ids 0 and 2 it makes 1s).",
                    {"y_min": lo, "y_max": hi, "fraction_share": float(np.mean(np.mod(y, 1) != 0))}, layer)
            return Issue(
                f"{name} holds non-integer class labels {_fmt_values(values)}; {loss} needs the "
                f"integer class ids 0..{units - 1}.",
                "Encode the classes as integers: classes, y = np.unique(y, return_inverse=True).",
                {"y_min": lo, "y_max": hi}, layer)
        if lo < 0 or hi >= units:
            classes = len(_sample_values(y))
            remap = f"map the {classes} distinct labels to 0..{classes - 1}: classes, y = np.unique(y, return_inverse=True)"
            values = _sample_values(y)
            outside = values[(values < 0) | (values >= units)]
            void = float(outside[0]) if per_position and outside.size == 1 and (outside[0] < 0 or outside[0] == 255) else None
            if void is not None:
                # Masks whose pixels with no class hold a void label (VOC's 255, -1) beside ids that
                # fit: 0..2 and 255 for 3 units were told "use Dense(256), or map the 4 distinct labels
                # to 0..3", which trains the void pixels as a class. Keras' loss leaves them out itself.
                share = float(np.mean(strided_rows(y.reshape(-1), 200_000) == void))
                v = format_number(void)
                fix = (f"Every id but {v} fits the {units} units: {v} looks like a void label ({share:.1%} of the positions), the "
                       f"positions with no class, which the loss should leave out: loss=keras.losses.SparseCategoricalCrossentropy("
                       f"from_logits={logits}, ignore_class={v}) (in a recipe, loss: {{name: sparse_categorical_crossentropy, "
                       f"ignore_class: {v}}}). If {v} is a class of its own, give it an id, {units}, and use {units + 1} units.")
            elif lo >= 1 and hi == units:
                fix = "The labels look 1-based: use y - 1 (in a recipe, data: {target_offset: -1})."
            elif lo < 0 or hi + 1 > 100 * max(classes, units):
                # Negative ids, or ids far larger than any class count: names, not ids.
                fix = remap[0].upper() + remap[1:] + (f", and use Dense({classes})." if classes != units else ".")
            elif dataset:
                # A dataset's labels cannot be remapped with np.unique; image_dataset_from_directory
                # numbers its class folders 0..K-1, so the output is what is short of units.
                fix = (f"Use Dense({int(hi) + 1}) if there are {int(hi) + 1} classes (image_dataset_from_directory numbers its "
                       f"class folders 0..K-1: Dense(len(dataset.class_names))), or map the labels to 0..{units - 1} in the dataset.")
            else:
                fix = f"Use Dense({int(hi) + 1}) if there are {int(hi) + 1} classes, or {remap}."
            return Issue(
                f"{name} holds class ids {format_number(lo)}..{format_number(hi)} but the output layer '{layer}' has "
                f"{units} unit{'s' if units != 1 else ''} (ids 0..{units - 1}): an id outside that range "
                f"has no unit, and {loss} returns NaN or garbage for it.", fix,
                {"y_min": lo, "y_max": hi, "units": units}, layer)
        return None
    if kind == "binary":
        values = _distinct(y)
        if lo < 0 or hi > 1:
            columns = _columns_issue(y, name, loss, layer)
            if columns is not None:
                return columns
            vals = {float(v) for v in values}
            if vals <= {-1.0, 1.0}:
                fix = "Map -1/+1 to 0/1: y = (y + 1) / 2."
            elif vals <= {1.0, 2.0}:
                fix = "The labels look 1-based: use y - 1 (in a recipe, data: {target_offset: -1})."
            elif _pixel_values(y, lo, hi):
                # An autoencoder's (or denoiser's) target images left in 0..255 while the inputs were
                # scaled: "counts: make each a 0/1 label, y = (y > 0)" would binarise every image.
                fix = (f"Values from {format_number(lo)} to {format_number(hi)} in rows of {y[0].size} look like 8-bit "
                       f"pixels (target images left unscaled): scale them into [0, 1], {name} = {name} / 255 (the inputs too, where "
                       f"they are not), and multiply the predictions by 255 to get pixels back.")
            elif is_integral(y) and len(values) > 2 and y.ndim == 2 and y.shape[-1] > 1:
                # One count a label (how often each tag occurs in a row): multiclass's one class id a row is no fit.
                fix = "Whole numbers in every label column look like counts: make each a 0/1 label, y = (y > 0).astype('float32')."
            elif is_integral(y) and len(values) > 2:
                count = len(_sample_values(y))
                if count > _MANY_CLASSES:  # counts or measurements, most likely (sklearn's diabetes: 214)
                    fix = (f"{count} distinct whole numbers look like a quantity, not classes: use task='regression' "
                           f"with a linear output and MSE (or task='multiclass' if they are class ids).")
                else:
                    fix = (f"These look like {count} classes: use task='multiclass' with "
                           f"SparseCategoricalCrossentropy and a softmax output.")
            elif hi == 255:
                fix = "These look like 0/255 masks: use y = y / 255."
            else:
                fix = "Map the labels to 0/1, e.g. y = (y == positive_class).astype('float32')."
            return Issue(
                f"{name} holds {_fmt_values(values)} but {loss} needs 0/1 labels (or probabilities "
                f"in [0, 1]); with other values the loss is unbounded or meaningless.", fix,
                {"y_min": lo, "y_max": hi, "distinct": [float(v) for v in values[:8]]}, layer)
        if len(values) <= 2 and not {float(v) for v in values} <= {0.0, 1.0} and hi < 0.5:
            return Issue(
                f"{name} holds {_fmt_values(values)}: the positive label is {format_number(hi)}, not 1 "
                f"(labels divided by 255?), so the model is trained to predict {format_number(hi)} for positives.",
                "Use 0/1 labels: y = (y > 0).astype('float32').",
                {"y_min": lo, "y_max": hi}, layer)
        return None
    if kind == "hinge":
        values = _distinct(y)
        if not {float(v) for v in values} <= {-1.0, 0.0, 1.0}:
            return Issue(f"{name} holds {_fmt_values(values)} but {loss} needs labels -1/+1 (or 0/1).",
                         "Map the labels to -1/+1, e.g. y = np.where(y == positive_class, 1, -1).",
                         {"y_min": lo, "y_max": hi}, layer)
    return None


#: Values a row holds at least, and the largest value at least, for targets outside [0, 1] to be
#: read as 8-bit pixels (see :func:`_pixel_values`).
_PIXEL_ROW_VALUES = 16
_PIXEL_MIN_HIGH = 128.0
#: The median nonzero value, at least, of targets read as pixels (a count's is a few).
_PIXEL_MIN_MEDIAN = 16.0


def _pixel_values(y: np.ndarray, lo: float, hi: float) -> bool:
    """Whether binary cross-entropy targets outside [0, 1] look like 8-bit pixels: rows of
    16 values or more (an image, a flattened one too) between 0 and at most 255, the largest at
    least 128, more than two values (0/255 masks have advice of their own), and their median
    nonzero value 16 or more: word or tag counts reach 128-255 too, but most of them are a few
    (Zipf-like counts over 64 columns up to 200: median 4), where an image's pixels spread over the range."""
    if not (y.ndim >= 2 and y[0].size >= _PIXEL_ROW_VALUES and lo >= 0 and _PIXEL_MIN_HIGH <= hi <= 255
            and len(_distinct(y, 2)) > 2):
        return False
    sample = strided_rows(y.reshape(-1), 200_000)
    nonzero = sample[sample > 0]
    return nonzero.size > 0 and float(np.median(nonzero)) >= _PIXEL_MIN_MEDIAN


def _columns_issue(y: np.ndarray, name: str, loss: str, layer: str | None) -> Issue | None:
    """Labels of several columns (multilabel) of which only some leave [0, 1]: those columns named.

    The advice for one label column read every column's values as one ("y holds {0, 1, 2, 3, 4}:
    these look like 5 classes, use task='multiclass'") for five 0/1 columns beside a count of
    them, and told a multi-hot target to use one class id a row.
    """
    if y.ndim != 2 or y.shape[-1] < 2:
        return None
    outside = np.flatnonzero(((y < 0) | (y > 1)).any(axis=0))
    if len(outside) == len(y[0]):  # every column: the values, not a column, are the problem
        return None
    k = int(outside[0])
    others = np.delete(y, k, axis=1)
    total = np.array_equal(y[:, k], others.sum(axis=1))
    what = (" (it is the sum of the other columns: the number of labels a row holds, not a label)" if total else "")
    which = f"column {k}" if len(outside) == 1 else f"columns {', '.join(map(str, outside[:8]))}"
    return Issue(
        f"{which[0].upper() + which[1:]} of {name} hold{'s' if len(outside) == 1 else ''} {_fmt_values(_sample_values(y[:, k]))}"
        f"{what}, while the other columns are 0/1 labels; {loss} needs every column to be 0/1 (or a probability in [0, 1]).",
        f"Drop it from the labels (y = np.delete(y, {k}, axis=1), with one output unit less) if it is no label, or make it "
        f"a 0/1 label (y[:, {k}] = (y[:, {k}] > 0)).",
        {"columns": [int(c) for c in outside], "y_min": float(np.min(y)), "y_max": float(np.max(y)), "sum_of_others": total}, layer)


def _multi_hot_rows(y: np.ndarray) -> int:
    """How many rows of 0/1 label rows ``y`` hold several 1s (0 where ``y`` is not 0/1)."""
    if not np.isin(y, (0, 1)).all():
        return 0
    return int((y.reshape(-1, y.shape[-1]).sum(axis=1) > 1).sum())


def single_class(ctx: DataContext) -> Issue | None:
    """Classification training labels that all hold the same class: there is nothing to learn."""
    if ctx.where:  # only a dataset's first batches: a dataset sorted by class starts like this
        return None
    for t in ctx.targets:
        ids = _training_class_ids(t)
        if ids is None or ids.size == 0 or np.any(ids != ids[0]):
            continue
        n, label = len(ids), _class_label(t, int(ids[0]))
        rows = "the only row is" if n == 1 else f"all {n} rows are"
        elsewhere = _other_validation_classes(t, int(ids[0]))
        if n < MIN_TRAIN_ROWS:  # one class in a handful of rows is chance, not an order
            seen = f" With {n} training row{'s' * (n > 1)}, one class can happen by chance: train on more rows (or a smaller validation split)."
        elif elsewhere:
            seen = (f" The validation labels hold {elsewhere}: were the rows sorted by label before the split? "
                    f"Shuffle x and y together before splitting.")
        else:
            seen = ""
        return Issue(
            f"The training labels {t.name} hold one class only: {rows} class {label}. A classifier has "
            f"nothing to learn from them: always answering {label} is exact, so the loss falls to 0 "
            f"and the model never sees another class.{seen}",
            "Check the label column (data.target of a csv recipe, y in code), the filter that made "
            "the rows and the split: the training rows need at least two classes.",
            {"class": label, "rows": n}, t.output.layer if t.output else None)
    return None


def constant_targets(ctx: DataContext) -> Issue | None:
    """Regression training targets that hold one value in every row: ``single-class``'s twin.

    All-zero targets (a wrong column, a failed join) trained to a loss of 0 and got no finding:
    predicting the one value is exact, so nothing is learned from the inputs.
    """
    if ctx.where:  # only a dataset's first batches: a dataset sorted by target starts like this
        return None
    for t in ctx.targets:
        if t.task != "regression" or t.y is None or not is_numeric(t.y) or len(t.y) < 2:
            continue
        y = t.y.reshape(len(t.y), -1)
        if not np.all(y == y[0]):
            continue
        values = ", ".join(format_number(float(v)) for v in y[0][:4]) + (", ..." if y.shape[1] > 4 else "")
        few = (f" With {len(y)} training rows, one value can happen by chance: train on more rows (or a smaller validation split)."
               if len(y) < MIN_TRAIN_ROWS else "")
        return Issue(
            f"The regression targets {t.name} hold one value in all {len(y)} training rows ({values}). A model has nothing "
            f"to learn from them: predicting that value is exact, so the loss falls to 0 whatever the inputs hold.{few}",
            "Check the target column (data.target of a csv recipe, y in code), the filter that made the rows and the "
            "split: the training targets need to vary.",
            {"value": [float(v) for v in y[0][:4]], "rows": len(y)}, t.output.layer if t.output else None)
    return None


def _training_class_ids(t: Target) -> np.ndarray | None:
    """The class id of each training row of a single-label classification target, or ``None``."""
    if t.task not in ("binary", "multiclass") or t.y is None or t.loss.kind not in CLASSIFICATION_LOSSES:
        return None
    return class_ids(t, t.y)


def _class_label(t: Target, class_id: int) -> str:
    """How the labels write a class: its value in a label column (-1 for hinge), else its id."""
    assert t.y is not None
    if t.y.ndim >= 2 and t.y.shape[-1] > 1:
        return str(class_id)
    return format_number(float(t.y.reshape(-1)[0]))


def _other_validation_classes(t: Target, class_id: int) -> str:
    """The validation labels' classes other than ``class_id`` (``"{1, 2}"``), or ``""``."""
    ids = class_ids(t, t.y_val) if t.y_val is not None and t.y_val.size else None
    if ids is None:
        return ""
    others = np.setdiff1d(np.unique(ids), [class_id])
    return _fmt_values(others) if others.size else ""


def labels_out_of_range(ctx: DataContext) -> Issue | None:
    """Regression targets a bounded output (sigmoid, tanh, relu, ...) can never produce, negative
    targets that ``poisson`` or ``msle`` cannot take, or targets of 0 that ``mape`` divides by."""
    for t in ctx.targets:
        if t.task != "regression":
            continue
        # The validation targets too: out of reach there, val_loss has a floor no training lowers.
        for name, y, w in ((t.name, t.y, ctx.sample_weight), (validation_name(t.name), t.y_val, ctx.val_sample_weight)):
            issue = _zero_for_mape(t, y, name, w) or _out_of_range(t, y, name)
            if issue is not None:
                return issue
    return None


#: Keras' MAPE divides each error by max(|y|, this): a target of 0 makes its row's loss 1e9 times
#: the prediction.
_MAPE_EPSILON = 1e-7


def _zero_for_mape(t: Target, y: np.ndarray | None, name: str, weights: np.ndarray | None = None) -> Issue | None:
    """Targets of 0 (``|y| <= 1e-7``) under MAPE, which divides each error by ``|y|``, in rows
    whose weight (``weights``: one per row, or ``None``) is not 0.

    Counts with 24% zeros trained with ``loss='mape'`` started at a loss of 7.8e7 and ended at
    6.7e6, told only that the first loss was "1.2e6x the chance level" (75: predicting 0 for
    every row, which the zero rows force) and to look at the initialisers.
    """
    # Keras's MAPE only (its family known): a function of the user's under its name is trained as
    # written (see describe_loss), and may guard its division (|y| + 1); a refusal stops the fit.
    if t.loss.name not in MAPE_NAMES or t.loss.kind is None or y is None or not is_numeric(y) or y.size == 0:
        return None
    zero = np.abs(np.asarray(y, dtype=np.float64)) <= _MAPE_EPSILON
    if weights is not None and np.shape(weights) == (len(y),):
        # A row weighted 0 adds nothing to the loss: weighting the zeros out (the missing values
        # the advice names) was refused as if they were still in it.
        zero &= (np.asarray(weights) != 0).reshape((len(y),) + (1,) * (zero.ndim - 1))
    if not zero.any():
        return None
    share = float(np.mean(zero))
    return Issue(
        f"{share:.1%} of the targets of {name} are 0, and {t.loss.describe()} divides each error by |y| (by "
        f"{_MAPE_EPSILON:g} where y is 0): a prediction of 1 on such a row scores {100 / _MAPE_EPSILON:.0e}, so these rows "
        "swamp the loss (millions for predictions of order 1) and pull every prediction towards 0.",
        "MAPE is for targets away from 0: use loss='mae' (or 'huber') for targets that include 0, 'poisson' for counts "
        "(with activation='exponential' or 'softplus' on the output), or drop the rows whose 0 stands for a missing value "
        "(in a recipe, loss: mae).",
        {"zero_share": share, "zero_rows": int(zero.reshape(len(y), -1).any(axis=1).sum())},
        t.output.layer if t.output is not None else None)


def _out_of_range(t: Target, y: np.ndarray | None, name: str) -> Issue | None:
    """:func:`labels_out_of_range` for one array of ``t``'s targets (``name``: how to call it)."""
    if y is None or t.output is None or not is_numeric(y) or y.size == 0:
        return None
    lo, hi = t.output.output_range
    what = f"applies {t.output.activation}, whose outputs lie"
    if t.loss.kind == "poisson":
        lo, what = max(lo, 0.0), f"feeds {t.loss.describe()}, whose rates lie"
    msle = t.loss.name in MSLE_NAMES
    if msle:
        # MSLE compares log(max(y, 0) + 1) with log(max(y_pred, 0) + 1): every negative target
        # is read as 0, silently (signed targets trained without a word).
        lo, what = max(lo, 0.0), f"feeds {t.loss.describe()}, whose targets lie"
    if t.output.activation == UNKNOWN or (math.isinf(lo) and math.isinf(hi)):
        return None
    y_lo, y_hi = float(np.min(y)), float(np.max(y))
    tol = 1e-6 * max(1.0, abs(lo) if math.isfinite(lo) else 0.0, abs(hi) if math.isfinite(hi) else 0.0)
    if y_lo >= lo - tol and y_hi <= hi + tol:
        return None
    share = float(np.mean((y < lo - tol) | (y > hi + tol)))
    rng = f"[{'-inf' if math.isinf(lo) else format_number(lo)}, {'inf' if math.isinf(hi) else format_number(hi)}]"
    if math.isfinite(lo) and math.isfinite(hi):
        span = y_hi - y_lo or 1.0
        rescale = (f"or rescale the targets into {rng}: y_scaled = {_minus('y', y_lo)} / {format_number(span)}"
                   + (f" * {format_number(hi - lo)}{_minus('', -lo)[1:-1]}" if (lo, hi) != (0.0, 1.0) else "")
                   + " (and invert the predictions)")
    else:
        rescale = "or shift the targets into the output's range"
    fix = (f"Remove the activation from '{t.output.activation_layer}' (a linear output) and "
           f"standardise the targets, {rescale} (in a recipe, leave activation out of that layer and set "
           "preprocessing.standardize_targets: true).")
    if t.loss.kind == "poisson":
        # Counts standardised before the fit (or by a recipe) are signed: "use mse" left out the
        # fix for counts, which is to keep them as they are.
        fix = ("Poisson() models non-negative counts: keep the counts as they are (unshifted, unstandardised: standardised "
               "counts are signed too), with activation='exponential' or 'softplus' on the output, or use loss='mse' for "
               "signed targets.")
    elif msle:
        fix = ("MSLE compares log(1 + y), meant for targets >= 0: use loss='mse' (or 'huber') for signed targets "
               "(standardised targets are signed too), or keep the targets >= 0 (unshifted, unstandardised).")
    return Issue(
        f"The targets of {name} range from {format_number(y_lo)} to {format_number(y_hi)} but the output layer "
        f"'{t.output.activation_layer}' {what} in {rng}: {share:.1%} of the targets "
        + ("are read as 0 by the loss (it compares log(max(y, 0) + 1)), so the model is trained on targets that are not "
           "yours." if msle else "can never be reached, so the loss cannot fall below a floor and the output saturates."), fix,
        {"y_min": y_lo, "y_max": y_hi, "output_min": lo, "output_max": hi, "share_outside": share},
        t.output.activation_layer)
