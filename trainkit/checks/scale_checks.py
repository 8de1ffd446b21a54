"""Rules on the scale of the numbers a model learns from: inputs far from zero or of uneven
scales (``unscaled-inputs``) and regression targets far above 1 (``unscaled-targets``).

Apart from the other rules: these are warnings on a sample of the rows, about conditioning, not
about data that is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from trainkit.checks.compatibility import MAPE_NAMES, MSLE_NAMES, Issue
from trainkit.checks.data_context import (
    DataContext,
    Target,
    channels_last,
    feature_label,
    format_number,
    input_label,
    is_numeric,
    position_axes,
    reduce_text,
    row_budget,
    strided_rows,
)
from trainkit.diagnosis.baseline import target_scale

_NARROW_FEATURES = 64  # fewer features than this: their statistics are read feature by feature
UNSCALED_MEAN = 10.0
UNSCALED_STD = 10.0
UNSCALED_STD_RATIO = 100.0
#: A value this many robust scales (interquartile range / 1.349) from its feature's median is an
#: outlier: a normal feature's largest of 100k rows lies ~4.5 from it.
OUTLIER_SCALES = 50.0
#: At most this share of the rows may be outliers for the bulk to be "scaled, but for a few rows".
OUTLIER_SHARE = 0.01
#: Inputs whose every channel spreads less than this after the model's ``Rescaling`` were shrunk
#: by it: ``Rescaling(1 / 255)`` of images already in [0, 1] leaves a spread of ~0.001.
TINY_SCALE = 0.01
#: Inputs whose every feature spreads less than this (std, or a sixth of its range) are too small
#: to learn from at the usual rates: the first layer's gradients shrink with them, and so does what
#: its steps change in the outputs. scikit-learn's load_diabetes() features (std 0.048) into a
#: 10-64-1 MLP: SGD(0.01) never reached MSE 0.6 (of the target variance) in 100 epochs (0.60-0.66,
#: seeds 0-2) where standardised it did by epoch 3-4; Adam took 15-18 epochs against 3-5; the
#: first layer's gradient norm was 0.08 against 1-3. Spread 0.1: SGD 34-40 epochs. Not 0.2:
#: images in [0, 1] (std ~0.3; a border pixel's range 1, a sixth of it 0.17) and one-hot or 0/1
#: columns (range 1, however rare the 1s) are scaled.
TINY_INPUT_SCALE = 0.1


def _outliers(f: np.ndarray) -> list[tuple[int, int, int, float, float, float]] | None:
    """For ``f`` (``[features, rows]``) whose bulk is scaled (medians, interquartile ranges and
    their spread within the thresholds) but a few rows are not: ``(feature, outlier rows, first
    such row, its value, median, interquartile range)`` per such feature; else ``None``.

    One row of 1e4 among standardised values read as unscaled inputs (std 447), and the advice to
    standardise would have squashed every other row of that feature into a band 450 times narrower.
    """
    median = np.median(f, axis=1)
    q1, q3 = np.percentile(f, [25, 75], axis=1)
    robust = (q3 - q1) / 1.349
    varying = np.flatnonzero(robust > 1e-12)
    if not len(varying) or float(np.abs(median).max()) >= UNSCALED_MEAN or float(robust.max()) >= UNSCALED_STD:
        return None
    if len(varying) >= 2 and float(robust[varying].max() / robust[varying].min()) >= UNSCALED_STD_RATIO:
        return None
    found = []
    kept = np.ones(f.shape[1], dtype=bool)
    for j in varying:
        far = np.abs(f[j] - median[j]) > OUTLIER_SCALES * robust[j]
        count = int(far.sum())
        if count:
            if count > OUTLIER_SHARE * f.shape[1]:
                return None  # a heavy tail, not a few bad rows
            kept &= ~far
            row = int(np.argmax(far))
            found.append((int(j), count, row, float(f[j, row]), float(median[j]), float(q3[j] - q1[j])))
    # A feature with no interquartile range is no part of the bulk read above: one of 80% zeros
    # and amounts of ~8000 (std 4160) was left out, and the run told its inputs were scaled but
    # for one row of another feature. Outside the outlier rows, it must be scaled too.
    flat = np.setdiff1d(np.arange(len(f)), varying)
    if found and len(flat):
        rest = f[flat][:, kept]
        if float(np.abs(rest.mean(axis=1)).max()) >= UNSCALED_MEAN or float(rest.std(axis=1).max()) >= UNSCALED_STD:
            return None
    return found or None


#: Distinct whole numbers up to which a feature may be a category code: standardising such a
#: column keeps its codes' arbitrary order (50 ids of random effect, standardised: 0.58 validation
#: accuracy at chance, one-hot 1.0).
_CATEGORY_CODES = 100
#: More distinct whole numbers than that are codes too when each repeats in this many rows on
#: average, one apart at the finest (zip codes, store or product ids): 300 zip codes of random
#: effect over 4,000 rows, standardised, reached 0.54-0.56 validation accuracy (seeds 0-1), an
#: Embedding of them 0.89-0.90 of a possible 0.9. Amounts rounded to a step (incomes to 1000s)
#: repeat as much, and are told apart by that step.
_CODE_REPEATS = 5


def _category_codes(values: np.ndarray) -> np.ndarray | None:
    """The distinct values of a feature (finite ``values``) when they may be category codes: 3 to
    :data:`_CATEGORY_CODES` whole numbers, or more, each repeated :data:`_CODE_REPEATS` times on
    average, not all on a coarser step than 1; else ``None``."""
    distinct = np.unique(values)
    if distinct.size < 3 or not np.all(np.mod(distinct, 1) == 0):
        return None
    if distinct.size <= _CATEGORY_CODES:
        return distinct
    if distinct.size * _CODE_REPEATS > values.size or float(np.abs(distinct).max()) >= 2.0**53:
        return None
    step = int(np.gcd.reduce(np.diff(distinct).astype(np.int64)))
    return distinct if step == 1 else None


#: Sampled rows a feature must rise on, every one, before it is taken for an ID (as a csv's column).
_ID_MIN_ROWS = 20


def _scaled_input(index: int, count: int, keys: Sequence[str] | None) -> str:
    """A dataset element's inputs ``x`` with input ``index`` of ``count`` divided by 255, as Python
    for a ``dataset.map``: ``x / 255`` raised a TypeError on a dict or tuple of several inputs."""
    if count == 1:
        return "x / 255"
    if keys is not None and index < len(keys):
        return f"{{**x, {keys[index]!r}: x[{keys[index]!r}] / 255}}"
    return f"tuple(v / 255 if k == {index} else v for k, v in enumerate(x))"


def _id_columns(f: np.ndarray, worst: list[int]) -> list[int]:
    """The listed features (``f`` is [features, rows], rows in the caller's order) of whole numbers
    that rise on every row: IDs or row numbers (a csv's ``data-id-column``, passed as an array).

    None when they are every feature of the input: a regression on one feature of sorted whole
    numbers (``x = np.arange(200)``, ``y = sin(x / 10)``) was told to delete it, leaving the model
    nothing to read; an input that is all IDs is no case of IDs left among features.
    """
    if f.shape[1] < _ID_MIN_ROWS:
        return []
    ids = [j for j in worst if np.all(np.diff(f[j]) > 0) and np.all(np.mod(f[j], 1) == 0)]
    return ids if len(ids) < f.shape[0] else []


def _id_column_hint(f: np.ndarray, ids: list[int], names: Any, x: str) -> str:
    """Advice for the listed features that count up row by row (of the input named ``x``): leave
    them out, not standardise them.

    A row number standardised is still a row number: it tells nothing about new rows (whose
    numbers lie past the training ones) and learns whatever order the rows came in (rows sorted
    by label, numbered, then split at random: the number alone gave 97% validation accuracy on
    random labels).
    """
    if not ids:
        return ""
    labels = [feature_label(j, names, capital=not k) for k, j in enumerate(ids)]
    first = [f"{v:.0f}" for v in f[ids[0], :3]]  # whole numbers in full: a timestamp's 1.6e+09 looks constant
    return (f" {', '.join(labels)} {'counts' if len(ids) == 1 else 'count'} up row by row ({', '.join(first)}, ...): "
            "an ID or a row number, which tells nothing about new "
            f"rows and picks up any order the rows have (sorted by label, it leaks the label). Leave it out of the features "
            f"({x} = np.delete({x}, {ids[0] if len(ids) == 1 else ids}, axis=1), and the same from the validation and test rows) "
            "rather than standardise it, unless it is a time "
            "the model should use.")


def _category_code_hint(f: np.ndarray, worst: list[int], names: Any) -> str:
    """Advice for the listed features that may be category codes (``f`` is [features, rows]): a
    category code, if it is one, wants one-hot or an Embedding, not standardising. Said as an if:
    whole numbers are counts and ages as often as codes, which standardising suits.

    Every such feature is named: only the first was, and an age (72 whole numbers) listed before a
    store id of 40 or a column of 300 zip codes got the hint in their place.
    """
    found = []
    for j in worst:
        values = f[j][np.isfinite(f[j])]
        distinct = _category_codes(values)
        if distinct is not None:
            label = feature_label(j, names) if names else f"feature {j}"
            # Whole numbers in full: zip codes read "1.002e+04..9.929e+04".
            span = f"{distinct[0]:.0f}..{distinct[-1]:.0f}"
            found.append((f"{label} (only {distinct.size} whole numbers, {span})" if distinct.size <= _CATEGORY_CODES else
                          f"{label} ({distinct.size} whole numbers, {span}, each in ~{values.size / distinct.size:.0f} rows)", distinct.size))
    if not found:
        return ""
    many = max(size for _, size in found) > _CATEGORY_CODES
    return (f" If {' or '.join(text for text, _ in found)} is a category code, not an amount, standardising keeps its codes' "
            "arbitrary order: one-hot encode it (keras.layers.IntegerLookup(output_mode='one_hot') or "
            "CategoryEncoding) or give it an Embedding instead" +
            (" (for hundreds of codes, a zip code or a product id, keras.layers.IntegerLookup() then "
             "keras.layers.Embedding(vocabulary size + 1, 8))." if many else "."))


#: The range ``preprocess_input(mode="caffe")`` gives 0..255 pixels: each channel less its ImageNet
#: mean (103.939, 116.779, 123.68), a little slack for rounding.
_CAFFE_RANGE = (-124.0, 152.0)


def _caffe_range(f: np.ndarray) -> bool:
    """Whether ``f`` (``[channels, values]``) holds pixels as ``preprocess_input(mode="caffe")``
    leaves them: some below 0, all within :data:`_CAFFE_RANGE`, three channels."""
    return len(f) == 3 and f.size > 0 and _CAFFE_RANGE[0] <= float(f.min()) < 0 and float(f.max()) <= _CAFFE_RANGE[1]


def unscaled_inputs(ctx: DataContext) -> Issue | None:
    """Features far from zero or whose scales differ by orders of magnitude."""
    for i, a in enumerate(ctx.xs):
        scaled = ctx.scales_inputs[i] if len(ctx.scales_inputs) == len(ctx.xs) else any(ctx.scales_inputs)
        normalizer = ctx.normalizers[i] if len(ctx.normalizers) == len(ctx.xs) else None
        if (scaled and normalizer is None) or not is_numeric(a) or a.dtype == bool or len(a) == 0:
            continue
        s = raw = strided_rows(a, row_budget(a, ctx.sample_rows))
        masked = ctx.masking_values[i] if len(ctx.masking_values) == len(ctx.xs) else None
        if masked is not None and normalizer is None and a.ndim >= 3:
            # A Masking layer's padding steps (every feature mask_value) are no values any layer
            # learns from: -99 padding made standardised features "not scaled (|mean| 71.08)".
            s = s[np.any(s != masked, axis=-1)]
            if not len(s):
                continue
        if normalizer is not None:
            # What the model's Normalization makes of them is what its layers read: never adapted
            # (mean 0, variance 1) it passes raw values through, which counted as scaled.
            s = _normalized(normalizer, s)
            if s is None:
                continue
        # A channels-first model's channels are axis 1: the last axis, an image's columns, read
        # 0..255 channels as "channel 14: mean 85.75" and missed a channel scaled apart.
        s = channels_last(ctx, i, s)
        unit = "channel" if a.ndim > 3 else "feature"
        f = s.reshape(-1, s.shape[-1]) if a.ndim > 2 else s.reshape(len(s), -1)
        # [features, rows]: numpy reduces a narrow [rows, features] array (an image's [pixels, 3]
        # channels) ~5x slower than the same values laid out feature by feature (33 vs 6 ms).
        f = f.T.astype(np.float64, order="C") if f.shape[1] < _NARROW_FEATURES else f.astype(np.float64).T
        if not np.isfinite(f).all():
            f = np.where(np.isfinite(f), f, np.nan)
            mean, std = np.nanmean(f, axis=1), np.nanstd(f, axis=1)
            ptp = np.nanmax(f, axis=1) - np.nanmin(f, axis=1)
        else:
            mean, std = f.mean(axis=1), f.std(axis=1)
            ptp = f.max(axis=1) - f.min(axis=1)
        mean, std, ptp = (np.nan_to_num(v) for v in (mean, std, ptp))
        scale = np.maximum(std, ptp / 6.0)
        varying = np.flatnonzero(scale > 1e-12)
        ratio = float(scale[varying].max() / scale[varying].min()) if len(varying) >= 2 else 1.0
        max_mean, max_std = float(np.abs(mean).max()), float(std.max())
        if isinstance(normalizer, keras.layers.Rescaling) and len(varying) and float(scale.max()) < TINY_SCALE:
            if (issue := _rescaled_twice(ctx, i, normalizer, raw, float(scale.max()))) is not None:
                return issue
            continue
        # Every feature shrunk near 0 (pre-scaled to unit norm per column, a fraction in 0..0.05):
        # as badly conditioned as large values, from the other side.
        tiny = bool(len(varying)) and float(scale.max()) < TINY_INPUT_SCALE
        if tiny and len(ctx.row_normalizers) == len(ctx.xs) and ctx.row_normalizers[i] is not None:
            # A LayerNormalization first makes them its own scale: only its epsilon, beside a
            # variance smaller still, keeps them small.
            tiny = _row_normalized_scale(ctx.row_normalizers[i], s) < TINY_INPUT_SCALE
        if max_mean < UNSCALED_MEAN and max_std < UNSCALED_STD and ratio < UNSCALED_STD_RATIO and not tiny:
            continue
        base = ctx.application_base if a.ndim == 4 and len(ctx.xs) == 1 else None
        if base is not None and base.mode == "caffe" and normalizer is None and _caffe_range(f):
            # What VGG's and ResNet's preprocess_input makes of pixels (BGR less the channel means,
            # std ~60-75) is the scale their weights were trained on: it read as "not scaled".
            continue
        if isinstance(normalizer, keras.layers.Rescaling) and max_mean < UNSCALED_MEAN and max_std < UNSCALED_STD:
            # One factor leaves the features' (channels') scales as uneven as they came: not the
            # layer's doing, and not judged before it was read (0..255 RGB with a near-empty
            # channel, through Rescaling(1 / 255), was told to give it the factor 1 / 255).
            continue
        size = np.maximum(np.abs(mean), std)
        worst = [int(j) for j in np.argsort(-size, kind="stable")[:3]]
        if ratio >= UNSCALED_STD_RATIO:
            smallest = int(varying[np.argmin(scale[varying])])
            if smallest not in worst:
                worst.append(smallest)
        names = ctx.feature_names if unit == "feature" and len(ctx.xs) == 1 else None
        described = "; ".join(f"{feature_label(j, names) if names else f'{unit} {j}'}: mean {format_number(mean[j])}, std {format_number(std[j])}" for j in worst)
        reasons = []
        if max_mean >= UNSCALED_MEAN or max_std >= UNSCALED_STD:
            reasons.append(f"values reach |mean| {format_number(max_mean)} / std {format_number(max_std)}")
        if ratio >= UNSCALED_STD_RATIO:
            reasons.append(f"feature scales span {math.log10(ratio):.1f} orders of magnitude")
        if tiny:
            reasons.append(f"every {unit} spreads by {format_number(float(scale.max()))} at most")
        name = input_label("x", i, len(ctx.xs), ctx.input_keys)
        lo_all, hi_all = float(f.min()) if f.size else 0.0, float(f.max()) if f.size else 0.0
        if normalizer is not None and ratio >= UNSCALED_STD_RATIO and tuple(getattr(normalizer, "axis", (-1,))) == () and len(scale) > 1:
            # axis=None: one mean and variance for all the values, adapted or not, which leaves
            # features of different scales as uneven as they were ("adapt it" was no fix).
            train = input_label("x_train", i, len(ctx.xs), ctx.input_keys)
            fix = (f"The Normalization layer '{normalizer.name}' was built with axis=None: one mean and variance for all of "
                   f"{name}'s values, which leaves its {unit}s' scales as uneven as they were. Build it with axis=-1 (the default: "
                   f"each {unit} its own) and adapt it on the training inputs: {normalizer.name}.adapt({train}).")
        elif isinstance(normalizer, keras.layers.Rescaling) and ratio >= UNSCALED_STD_RATIO:
            # Features of different units (a salary and an age through Rescaling(1 / 1000)): no one
            # factor brings them all to [0, 1].
            train = input_label("x_train", i, len(ctx.xs), ctx.input_keys)
            fix = (f"The Rescaling layer '{normalizer.name}' divides every {unit} by the same factor, which leaves their scales "
                   f"as uneven as they were: replace it with keras.layers.Normalization() adapted on the training inputs "
                   f"(layer.adapt({train})), each {unit} its own mean and variance.")
        elif isinstance(normalizer, keras.layers.Rescaling):
            top = f"{float(np.abs(raw).max()):.6g}"  # 65535 for 16-bit images, not 6.554e+04
            fix = (f"The Rescaling layer '{normalizer.name}' leaves them this large: give it the factor that brings {name} "
                   f"to [0, 1] (keras.layers.Rescaling(1 / {top}) for values up to {top}), or scale {name} before training.")
        elif normalizer is not None:
            train = input_label("x_train", i, len(ctx.xs), ctx.input_keys)
            fix = (f"Adapt the Normalization layer '{normalizer.name}' on the training inputs before training: "
                   f"{normalizer.name}.adapt({train}) (a layer never adapted has mean 0 and variance 1: it passes the values "
                   f"through unchanged), or build it with mean= and variance= of {train}.")
        elif normalizer is None and a.ndim <= 2 and (outliers := _outliers(f)) is not None:
            step = max(1, math.ceil(len(a) / max(1, len(s))))  # rows of the strided sample -> rows of x
            names = ctx.feature_names if len(ctx.xs) == 1 else None
            listed = "; ".join(f"{feature_label(j, names)}: {count} row{'s' * (count > 1)} (row {row * step} is {format_number(value)}, "
                               f"where its median is {format_number(median)} and its interquartile range {format_number(iqr)})"
                               for j, count, row, value, median, iqr in outliers[:3])
            return Issue(
                f"The inputs {name} look unscaled{ctx.where} ({'; '.join(reasons)}), but only because of a few extreme values: {listed}. "
                "The other rows are on a normal scale; standardising with these rows' std would squash them into a narrow band.",
                "Check those rows first: a unit error, or a sentinel for a missing value (9999, -1) to drop or fill. If they are real, "
                f"clip the feature to the training split's 1st..99th percentiles (np.clip({name}[:, {outliers[0][0]}], lo, hi)) or scale it by its median "
                "and interquartile range.",
                {"input": i, "features": [o[0] for o in outliers], "outlier_rows": [o[1] for o in outliers],
                 "first_rows": [o[2] * step for o in outliers], "max_abs_mean": max_mean, "max_std": max_std, "scale_ratio": ratio,
                 "rows_sampled": len(s)})
        elif lo_all >= 0 and 1.5 < hi_all <= 255 and base is not None and normalizer is None:
            # x / 255 is the wrong scale for these bases: MobileNetV2's weights want [-1, 1], ResNet50's
            # the channel means taken off 0..255 pixels.
            fix = (f"These look like 0..255 pixels, read by keras.applications' '{base.name}', which wants {base.describe()}: "
                   f"use {name} = keras.applications.{base.module}.preprocess_input({name}) on the 0..255 values (not {name} / 255), "
                   "or put that function in the input pipeline (dataset.map).")
        elif lo_all >= 0 and 1.5 < hi_all <= 255 and (a.dtype == np.uint8 or a.ndim > 2):
            # A recipe's feature_scale has already been applied to these values (random_images
            # with feature_scale: 255 makes them): it has to become 255 times smaller, not 1/255.
            fix = (f"These look like 0..255 pixels: use {name} = {name} / 255.0 (or keras.layers.Rescaling(1 / 255) first; in a recipe, "
                   "divide data.feature_scale by 255: data: {feature_scale: 0.00392157} where it was 1, "
                   "feature_scale: 1 where it was 255).")
            if ctx.where:
                # A dataset's batches (image_dataset_from_directory gives 0..255 floats) take no
                # numpy division: the model's layer, or a map over the dataset.
                fix = ("These look like 0..255 pixels (as keras.utils.image_dataset_from_directory reads them): put "
                       f"keras.layers.Rescaling(1 / 255) first in the model{' on that input' if len(ctx.xs) > 1 else ''}, or map the "
                       f"dataset: dataset.map(lambda x, y, *w: ({_scaled_input(i, len(ctx.xs), ctx.input_keys)}, y, *w)).")
        else:
            train = input_label("x_train", i, len(ctx.xs), ctx.input_keys)
            fix = (f"Standardise each feature with statistics of the training split: mean = {train}.mean(axis=0); "
                   f"std = {train}.std(axis=0) + 1e-8; {name} = ({name} - mean) / std, or put "
                   f"keras.layers.Normalization() (adapted on {train}) first in the model (in a recipe, "
                   "preprocessing.standardize_inputs: true).")
            if a.ndim <= 2:
                ids = _id_columns(f, worst)
                # A row number of 50 rows is 50 whole numbers too: it is no category code.
                fix += _id_column_hint(f, ids, names, name) + _category_code_hint(f, [j for j in worst if j not in ids], names)
        after = f" after the {type(normalizer).__name__} layer '{normalizer.name}'" if normalizer is not None else ""
        why = ("Large or uneven scales make the loss badly conditioned: one learning rate is too large for some "
               "weights and too small for others, and big inputs saturate activations." if len(reasons) > tiny else
               f"Inputs this small make the first layer's gradients ~{1 / float(scale.max()):.0f}x smaller than for "
               f"standardised inputs, and its steps barely move the outputs: it learns that much more slowly (SGD: "
               f"by the square of that), as if its learning rate were far too low (scikit-learn's diabetes features, std "
               f"0.048: SGD took over 100 epochs to the loss the same rows standardised reached in 3-4).")
        return Issue(
            f"The inputs {name} are not scaled{after}{ctx.where} ({'; '.join(reasons)}): {described}. {why}", fix,
            {"input": i, "features": worst, "mean": [float(mean[j]) for j in worst],
             "std": [float(std[j]) for j in worst], "max_abs_mean": max_mean, "max_std": max_std,
             "scale_ratio": ratio, "max_scale": float(scale.max()), "rows_sampled": len(s)})
    return None


#: Losses of ratios (MAPE) or logarithms (MSLE) of the targets, which standardising breaks.
_RELATIVE_LOSSES = MAPE_NAMES | MSLE_NAMES
#: Losses that read only the direction of each row's targets (and of its outputs), not their scale.
_DIRECTION_LOSSES = frozenset({"CosineSimilarity", "cosine_similarity"})


def _rescaled_twice(ctx: DataContext, i: int, layer: Any, raw: np.ndarray, spread: float) -> Issue | None:
    """The model's ``Rescaling`` shrinks inputs that were already scaled (``x / 255`` twice).

    Images in [0, 1] through ``Rescaling(1 / 255)`` reach the first layer as values under 0.004:
    a 16x16 CNN then stayed at chance (loss 1.38 of 1.386, seeds 0-2) where the same images
    scaled once reached validation accuracy 1.0, and was told only that its ReLUs were dead.
    """
    raw = raw.astype(np.float64)
    if not np.isfinite(raw).all() or float(raw.std(axis=tuple(range(raw.ndim - 1))).max()) < TINY_SCALE:
        return None  # inputs this narrow before the layer too: it did not shrink them
    name = input_label("x", i, len(ctx.xs), ctx.input_keys)
    lo, hi = float(raw.min()), float(raw.max())
    return Issue(
        f"The inputs {name} are already scaled (values {format_number(lo)}..{format_number(hi)}{ctx.where}) and the model's "
        f"Rescaling layer '{layer.name}' scales them again: its layers read values that spread by {format_number(spread)} at "
        "most, so every unit gets nearly the same input for every row, ReLU units look dead and the loss stays near chance.",
        f"Scale the inputs once: feed {name} as it is loaded (0..255) to keep the Rescaling layer '{layer.name}', or remove "
        f"that layer (or the {name} / 255.0 before training).",
        {"input": i, "min": lo, "max": hi, "max_spread_after": spread, "layer": layer.name, "rows_sampled": len(raw)})


def _row_normalized_scale(layer: Any, rows: np.ndarray) -> float:
    """The typical spread of what a layer that normalises each sample (``LayerNormalization``,
    ``UnitNormalization``; see ``input_row_normalizers``) makes of ``rows``, as a share of its own
    unit scale: ``sqrt(v / (v + epsilon))`` for a sample's variance ``v`` over the layer's axes (its
    mean square for RMS scaling), the median over the samples.

    Inputs of std 0.048 read by a ``LayerNormalization`` (epsilon 1e-3) first come out at ~0.9 of
    unit scale and trained as fast as standardised ones (4-5 epochs against 3-4); ten times
    smaller, 0.15, and they took 28-32. 1.0 where the layer's axes do not fit ``rows``.
    """
    epsilon = float(getattr(layer, "epsilon", 0.0) or 0.0)
    if isinstance(layer, keras.layers.UnitNormalization) or epsilon <= 0:
        return 1.0  # x / |x|: its epsilon (1e-12) only guards 0
    values = rows.astype(np.float64)
    axis = getattr(layer, "axis", -1)
    axes = tuple(range(1, values.ndim)) if isinstance(layer, keras.layers.GroupNormalization) else (
        tuple(axis) if isinstance(axis, list | tuple) else (axis,))
    try:
        rms = getattr(layer, "rms_scaling", False) or type(layer).__name__ == "RMSNormalization"
        v = np.mean(values**2, axis=axes) if rms else np.var(values, axis=axes)
    except (ValueError, TypeError):  # numpy's AxisError is a ValueError
        return 1.0
    v = v[np.isfinite(v)]
    return float(np.median(np.sqrt(v / (v + epsilon)))) if v.size else 1.0


def _normalized(layer: Any, rows: np.ndarray) -> np.ndarray | None:
    """``rows`` as a ``Normalization`` (or ``Rescaling``) layer makes them, or ``None`` when it cannot take them as they are.

    Computed in float64 from the layer's statistics, as its ``call`` does: called, a layer of a
    ``mixed_float16`` model computes in float16, where raw inputs ~3e5 overflow to inf.
    """
    if isinstance(layer, keras.layers.Rescaling):
        try:
            out = rows.astype(np.float64) * np.asarray(layer.scale, np.float64) + np.asarray(layer.offset, np.float64)
        except (TypeError, ValueError):  # a factor per channel that does not fit these rows
            return None
        return out if out.shape == rows.shape else None
    try:
        adapted = getattr(layer, "adapt_mean", None) is not None and getattr(layer, "_broadcast_shape", None) is not None
        mean, variance = ((layer.adapt_mean, layer.adapt_variance) if adapted else (layer.mean, layer.variance))
        shape = layer._broadcast_shape if adapted else np.shape(keras.ops.convert_to_numpy(mean))
        mean = np.reshape(np.asarray(keras.ops.convert_to_numpy(mean), np.float64), shape)
        variance = np.reshape(np.asarray(keras.ops.convert_to_numpy(variance), np.float64), shape)
        out = (rows.astype(np.float64) - mean) / np.maximum(np.sqrt(variance), keras.backend.epsilon())
    except Exception:  # a layer not built for this layout: its input counts as scaled, as before
        return None
    return out if out.shape == rows.shape else None


#: Targets more skewed than this (the third standardised moment: 0 for a normal, ~4 for log-normal
#: prices of log-std 1) whose logarithm is not (under :data:`_LOG_SKEW`) are told of a log scale.
_SKEWED = 2.0
_LOG_SKEW = 1.0
#: Losses whose value the largest targets rule on skewed targets (an absolute error far less so).
_SQUARED_LOSSES = frozenset({"MeanSquaredError", "mean_squared_error"})


def _skewness(v: np.ndarray) -> float:
    """The sample skewness of ``v`` (0 for a constant)."""
    std = float(v.std())
    return float(np.mean((v - v.mean()) ** 3)) / std**3 if std > 0 else 0.0


def _log_scale_hint(y: np.ndarray) -> str:
    """Advice to fit positive, right-skewed targets (prices, durations) on a log scale, or ``""``.

    Standardising keeps their shape: a squared error of log-normal prices (1e3..1e6, skewness 4) is
    ruled by the few largest. Fitted on log(y), the same MLP's validation MAPE was 23% against 47%
    on standardised y, for a similar MSE (1.04e8 against 9.35e7).
    """
    if y.size < 20 or float(y.min()) <= 0:
        return ""
    skew, log_skew = _skewness(y), _skewness(np.log(y))
    if skew < _SKEWED or abs(log_skew) >= _LOG_SKEW:
        return ""
    return (f" The targets are positive and skewed (skewness {skew:.2g}; {log_skew:.2g} for log(y)): a squared error is ruled "
            "by the few largest. If relative errors matter (prices, durations), fit on the standardised np.log(y) instead "
            "and predict with np.exp(model(x) * log_std + log_mean), or use loss='msle' (in a recipe, log the target column "
            "in the data, or loss: msle).")


def _uneven_target_columns(ctx: DataContext, t: Target, y: np.ndarray, non_negative: bool) -> Issue | None:
    """Target columns (channels: the last axis) each on a trainable scale but of spreads
    :data:`UNSCALED_STD_RATIO` times apart or more, or ``None``.

    The loss adds up every column's errors in its own units, so a narrow column's barely count and
    the model barely learns it: columns of std 5 and 0.05 (seeds 0-1) trained the wide one to
    validation R2 0.84-0.88 and left the narrow one at -4.8 to -2.0 (worse than its mean); standardised,
    0.98 and 0.23-0.33. Per channel only up to :data:`_NARROW_FEATURES` of them: a flattened
    image's pixels (an autoencoder's 784) spread unevenly by nature, and their loss is one image's.
    """
    if y.ndim < 2 or not 2 <= y.shape[-1] <= _NARROW_FEATURES:
        return None
    channels = y.reshape(-1, y.shape[-1]).astype(np.float64)
    std = channels.std(axis=0)
    varying = np.flatnonzero(std > 1e-12)
    if len(varying) < 2:
        return None
    wide, narrow = int(varying[np.argmax(std[varying])]), int(varying[np.argmin(std[varying])])
    ratio = float(std[wide] / std[narrow])
    if ratio < UNSCALED_STD_RATIO:
        return None
    axes = "axis=" + str(tuple(range(y.ndim - 1))) if y.ndim > 2 else "0"
    fix = (f"Scale each column by its own spread, keeping them >= 0 for the {t.output.activation} output: y_scale = "
           f"y_train.std({axes}); fit on y / y_scale and predict with model(x) * y_scale." if non_negative else
           f"Standardise each column with training-split statistics: y_mean, y_std = y_train.mean({axes}), "
           f"y_train.std({axes}); fit on (y - y_mean) / y_std and predict with model(x) * y_std + y_mean "
           "(or give each column its own output and loss_weights that even out their losses).")
    return Issue(
        f"The regression targets {t.name}{ctx.where} hold columns of very different spreads: column {narrow}'s std is "
        f"{format_number(float(std[narrow]))}, column {wide}'s {format_number(float(std[wide]))} ({ratio:.0f}x wider). "
        f"{t.loss.describe()} adds up the columns' errors in their own units, so column {narrow}'s barely count beside "
        f"column {wide}'s and the model barely learns it.", fix,
        {"std": [float(v) for v in std], "narrow_column": narrow, "wide_column": wide, "scale_ratio": ratio},
        t.output.layer if t.output else None)


#: Losses that weigh far errors linearly, not squared: a few far targets do not rule them.
_ROBUST_LOSSES = frozenset({"MeanAbsoluteError", "mean_absolute_error", "Huber", "huber", "LogCosh", "log_cosh"})


def _far_target_rows(ctx: DataContext, t: Target, y: np.ndarray, mean: float, std: float) -> Issue | None:
    """Targets (``y``: ``[rows, columns]``, a strided sample) that look unscaled only because of a
    few far rows (see :func:`_outliers`), or ``None``.

    Standardising them divides every target by the std those rows make: 1% of the targets at 1000
    among values ~1 (std ~100) put the others in a band ~0.01 wide, where Huber's and log-cosh's
    errors all fall in their squared part, and the bulk's validation R2 under Huber went from
    0.90-0.97 on the targets as they were to -4 to -29 standardised (seeds 0-2), at chance.
    """
    outliers = _outliers(y.T)
    if outliers is None:
        return None
    step = max(1, math.ceil(len(t.y) / max(1, len(y))))  # rows of the strided sample -> rows of y
    column, count, row, value, median, iqr = outliers[0]
    squared = t.loss.name not in _ROBUST_LOSSES
    at = f"column {column}: " if y.shape[1] > 1 else ""
    return Issue(
        f"The regression targets {t.name} look unscaled (mean {format_number(mean)}, std {format_number(std)}{ctx.where}), but "
        f"only because of a few far values: {at}{count} row{'s' * (count > 1)} (row {row * step} is {format_number(value)}, where "
        f"the median is {format_number(median)} and the interquartile range {format_number(iqr)}). The other targets are on a "
        f"normal scale; standardising with the std these rows make would squash them into a band ~{format_number(iqr / std)} wide"
        + (f", and {t.loss.describe()} is ruled by the far rows however the targets are scaled." if squared else
           f", where {t.loss.describe()} reads every other error as a small one, far narrower than the steps the model takes."),
        "Check those rows first: a unit error, or a sentinel for a missing value (9999, -1) to drop or weight 0. If they are "
        + ("real, keep the targets as they are and use a loss that a few rows do not rule: loss='huber' or 'mae' (in a recipe, "
           "loss: huber)." if squared else f"real, keep the targets as they are: {t.loss.describe()} weighs their errors "
           "far less than a squared error would."),
        {"mean": mean, "std": std, "column": column, "outlier_rows": count, "first_row": row * step, "value": value,
         "median": median, "iqr": iqr}, t.output.layer if t.output else None)


def _further_targets(ctx: DataContext, t: Target, sampled: np.ndarray) -> np.ndarray | None:
    """``t``'s targets in the training dataset's rows past those sampled, in the layout of
    ``sampled`` (``None``: none read, or of another layout; see ``DataContext.further_labels``)."""
    if ctx.further_labels is None:
        return None
    per_target = ctx.further_labels()
    index = next((i for i, other in enumerate(ctx.targets) if other is t), None)
    labels = per_target[index] if per_target is not None and index is not None and index < len(per_target) else None
    if labels is None or not len(labels) or not is_numeric(labels) or np.shape(labels)[1:] != sampled.shape[1:]:
        return None
    return np.asarray(labels)


def _targets_the_loss_reads(ctx: DataContext, t: Any) -> np.ndarray | None:
    """``t``'s targets at the positions the loss reads (``[positions, ...]``), where the one output
    keeps the one input's mask (see ``DataContext.loss_positions``), else ``None``."""
    positions = ctx.loss_positions
    if positions is None or len(ctx.targets) != 1 or t.y is None or t.y.ndim < 2 or positions.shape != t.y.shape[:2]:
        return None
    return t.y[positions]


def unscaled_targets(ctx: DataContext) -> Issue | None:
    """Regression targets with std or |mean| far above 1 for a linear (or relu-like) output."""
    for t in ctx.targets:
        if t.task != "regression" or t.y is None or not is_numeric(t.y) or t.y.size == 0:
            continue
        # A relu/softplus output reaches large targets too, as slowly (targets 0..100 got only
        # "bounded output" and "underfitting"); it needs them scaled, not centred.
        non_negative = t.output is not None and not t.output.rescaled and t.output.output_range == (0.0, float("inf"))
        # MAPE divides by |y| and MSLE reads every value below 0 as 0: standardised targets (centred
        # on 0) blow the first up and lose half of themselves to the second. Both take targets
        # divided by their scale (MAPE's value unchanged).
        relative = t.loss.name in _RELATIVE_LOSSES
        if t.loss.name in _DIRECTION_LOSSES:
            # Targets ~5000 trained a cosine-similarity model to -0.97 like standardised ones, and
            # were told their "first MSE" was ~3.6e7 and the output bias had to travel 5080 units.
            continue
        if t.loss.kind not in ("regression", None) or (t.output is not None and not non_negative and (t.output.activation != "linear" or t.output.rescaled)):
            continue
        y = strided_rows(t.y, ctx.sample_rows)
        scale = target_scale(y)
        read = _targets_the_loss_reads(ctx, t)
        if read is not None and scale is not None and not scale.scaled and (target_scale(read) or scale).scaled:
            # A masked tagger's padded steps, which the loss leaves out as Keras does: standardised
            # targets padded with -100 read "mean -96.01 and std 19.53", and were told to be standardised.
            continue
        further = _further_targets(ctx, t, y) if scale is not None and scale.scaled else None
        if further is not None:
            # A dataset that never shuffles showed its first rows only: a rising series' windows
            # in time order (timeseries_dataset_from_array) read targets 1..14 there, of 1..120 in
            # all, and the run ended at 74x its chance level with no word of their scale.
            y = np.concatenate([y, further])
            scale = target_scale(y)
        where = f"{ctx.where} and the {len(further)} rows after them" if further is not None else ctx.where
        if scale is None:
            continue
        if scale.scaled:
            # Only under a loss known to add up the columns' errors in their own units: a loss of
            # one's own (kind None) may weigh each column itself, as a per-column scaled MSE did,
            # and was told its narrow column "barely counts".
            uneven = None if relative or t.loss.kind != "regression" else _uneven_target_columns(ctx, t, y, non_negative)
            if uneven is not None:
                return uneven
            continue
        m, s, j = scale.mean, scale.std, scale.column
        y = y.reshape(len(y), -1)
        # A table of several targets (Linnerud's weight, waist and pulse): m and s are column j's,
        # so its range is too, and the message names it (the three columns' range, 31..247, was
        # quoted beside the weight's mean 184 and std 23).
        column = t.y.ndim == 2 and y.shape[1] > 1
        lo, hi = (float(y[:, j].min()), float(y[:, j].max())) if column else (float(y.min()), float(y.max()))
        # What an output of 0 scores: MSE averages every column's squared targets, not column j's
        # (the weight's 3.4e4 was quoted where the three columns' mean is 1.3e4).
        zero_mse = float(np.mean(np.square(y)))
        far = None if relative or y.shape[1] > _NARROW_FEATURES else _far_target_rows(ctx, t, y, m, s)
        if far is not None:
            return far
        bias = ctx.output_biases.get(t.output.layer) if t.output is not None else None
        # What the output has to cover: the offset when the targets sit far from 0, else their
        # spread (make_regression's targets, mean -5 and std 168, were told the bias had to
        # travel 5.2 units, the one part of them that needed no scaling).
        far = (f"the output bias has to travel {format_number(abs(m))} units" if abs(m) > s else
               f"the output weights have to grow until the outputs spread ~{format_number(s)} units around their mean")
        start = (f"A freshly initialised output starts far from them (an output near 0 makes the first MSE about the mean "
                 f"of y squared, ~{format_number(zero_mse)}), so the first gradients are huge and {far}.")
        if relative:
            # Neither loss is an MSE: an output near 0 scores MAPE 100 and MSLE the mean of
            # log(1 + y) squared, and each step moves it a learning rate's worth towards targets ~m.
            first = 100.0 if t.loss.name in MAPE_NAMES else float(np.mean(np.log1p(np.maximum(y, 0.0)) ** 2))
            start = (f"A freshly initialised output starts near 0, far from them (its first {t.loss.describe()} is "
                     f"~{format_number(first)}), and the output has to grow to ~{format_number(abs(m))} in steps of about "
                     f"the learning rate.")
        if bias is not None and abs(m) > s and abs(bias - m) <= s:
            # The bias starts near the targets' mean already: only their spread is left to cover.
            start = (f"The output bias starts at {format_number(bias)}, near their mean, but the outputs still have to "
                     f"spread ~{format_number(s)} units around it: the loss is measured in squared units of the "
                     f"targets (~{format_number(s * s)} for predicting the mean), so the gradients are huge.")
        axes = reduce_text(position_axes(t.y.ndim, t.output.shape if t.output is not None else None))
        # An output of one position axis, (H, 1), predicts a sequence (a forecast's horizon): its
        # steps are values of one series, not pixels (a (n, 5, 1) horizon was told of pixels).
        sequence = t.output is not None and t.output.shape is not None and len(t.output.shape) == 3
        per = ("" if axes == "0" else " (one value a channel over every step: the steps are values of one series, on one scale)"
               if sequence else " (one value a channel over every pixel: a pixel's own spread is ~0 where it barely varies)")
        # A recipe scales its targets with data.target_scale (one number: one target column), not
        # with code on a y it never holds; it may be set already, so the factor multiplies it.
        divisor = float(np.mean(np.abs(y[:, j]))) if relative else s
        recipe = (f" (in a recipe, multiply data.target_scale by {1 / divisor:.3g}: data: {{target_scale: {1 / divisor:.3g}}} "
                  "where it was 1)" if axes == "0" and y.shape[1] == 1 and divisor > 0 else "")
        return Issue(
            f"{f'Column {j} of the regression targets {t.name} has' if column else f'The regression targets {t.name} have'} "
            f"mean {format_number(m)} and std {format_number(s)}{where} (range {format_number(lo)}..{format_number(hi)}). {start}",
            (f"Scale the targets without centring them ({t.loss.describe()} compares ratios or logarithms of them, which "
             "targets centred on 0 break): "
             f"y_scale = np.abs(y_train).mean({axes}){per}; fit on y / y_scale and predict with model(x) * y_scale{recipe}." if relative else
             f"Scale the targets, keeping them >= 0 for the {t.output.activation} output: y_scale = y_train.std({axes}){per}; fit on y / y_scale "
             f"and predict with model(x) * y_scale (or make the output linear and standardise them){recipe}." if non_negative else
             f"Standardise the targets with training-split statistics: y_mean, y_std = y_train.mean({axes}), "
             f"y_train.std({axes}){per}; fit on (y - y_mean) / y_std and predict with model(x) * y_std + y_mean (in a recipe, "
             "preprocessing.standardize_targets: true)." + (_log_scale_hint(y[:, j]) if y.shape[1] == 1 and t.loss.name in _SQUARED_LOSSES else "")),
            {"mean": m, "std": s, "min": lo, "max": hi, "column": j},
            t.output.layer if t.output else None)
    return None


def constant_inputs(ctx: DataContext) -> Issue | None:
    """Every input feature holds one value in every training row: nothing to learn from.

    An all-zero x (a failed load, a mask applied twice) trained to the label prior and was told
    "dead-relu: fix the bias initialisation (zeros)", which it had: with a zero input and a zero
    bias a ReLU unit's input is 0 for every row. One constant column among varying ones is common
    and harmless (a one-hot level never seen, a padding channel), so only inputs with no varying
    feature at all are reported; an Embedding's id input is left to embedding-ids.
    """
    constant = []
    for i, a in enumerate(ctx.xs):
        if not is_numeric(a) or a.dtype == bool or len(a) < 2:
            return None
        if any(index == i for index, *_ in ctx.embeddings):
            return None
        s = strided_rows(a, row_budget(a, ctx.sample_rows))
        s = s.reshape(len(s), -1)
        if s.shape[1] == 0 or not bool(np.all(s == s[:1])):
            return None
        constant.append((i, float(s.flat[0]) if bool(np.all(s == s.flat[0])) else None))
    if not constant:
        return None
    if ctx.further_inputs_vary is not None and ctx.further_inputs_vary():
        # A dataset that never shuffles showed its first rows only: a series' windows batched in
        # time order begin with its first stretch, 800 steps of 0 before the values come.
        return None
    names = [input_label("x", i, len(ctx.xs), ctx.input_keys) for i, _ in constant]
    value = constant[0][1] if len(constant) == 1 and constant[0][1] is not None else None
    same = f"{format_number(value)} everywhere" if value is not None else "the same values"
    return Issue(
        f"The inputs {', '.join(names)} hold {same} in every row{ctx.where}: every row looks the same to the model, "
        f"so it can only learn the label prior / the target mean (the loss stays at chance), and ReLU units fed only "
        f"zeros look dead.",
        "Check how x was built: a load or join that failed and filled zeros, a mask or scaling applied twice "
        "(x * 0, x / a huge number), a column selection that kept the wrong columns, or features cast to int.",
        {"inputs": [i for i, _ in constant], "value": value})
