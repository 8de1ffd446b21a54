"""Rules on values no training step can use: NaN or Inf in any array fit is given
(``non-finite-data``), Embedding inputs that are no ids of its table (``embedding-ids``), and
lookup layers with no vocabulary to make ids with (``lookup-not-adapted``); padding ids that
an unmasked Embedding's average reads as tokens (``unmasked-padding``).

Apart from the label rules: these read the inputs' values too, whatever the task and the loss.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from trainkit.checks.compatibility import Issue
from trainkit.checks.data_context import (
    DataContext,
    format_number,
    input_label,
    is_integral,
    row_budget,
    strided_rows,
    validation_name,
)
from trainkit.inputs import narrows_to_float32

#: The largest float32: float64 values beyond it become Inf when fit narrows them to float32.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _non_finite(a: np.ndarray) -> tuple[int, int, int, int, int, np.ndarray | None]:
    """(rows with NaN/Inf or float32 overflow, first such row, NaN count, Inf count, count of
    float64 values that overflow float32, which of the first such row's values are bad); cheap
    when all are finite."""
    if a.dtype.kind not in "fc" or a.size == 0:
        return 0, -1, 0, 0, 0, None
    flat = a.reshape(len(a), -1)
    narrowed = narrows_to_float32(a.dtype)
    if narrowed:
        # max and min carry NaN through; 1e40 is finite here and Inf in the float32 tensor fit
        # makes of it, which the check called "Inf" data (the caller's np.isfinite says none).
        if max(flat.max(), -flat.min()) <= _FLOAT32_MAX:
            return 0, -1, 0, 0, 0, None
    else:
        acc = np.float64 if a.dtype.itemsize < 8 else None
        # inf + -inf (float16 data cast from values past ±65,504) sums to NaN: numpy's "invalid
        # value encountered in reduce" RuntimeWarning came from the check, not from the data.
        with np.errstate(invalid="ignore", over="ignore"):
            total = flat.sum(dtype=acc)
        if np.isfinite(total):
            return 0, -1, 0, 0, 0, None
    finite = np.isfinite(flat)
    bad = ~finite
    over = 0
    if narrowed:
        with np.errstate(over="ignore"):  # a value just above the largest float32 rounds down to it
            overflows = finite & np.isinf(flat.astype(np.float32))
        over = int(overflows.sum())
        bad |= overflows
    bad_rows = bad.any(axis=1)
    count = int(bad_rows.sum())
    if count == 0:
        return 0, -1, 0, 0, 0, None
    nan = int(np.isnan(flat).sum())
    inf = int((~finite).sum()) - nan
    first = int(np.argmax(bad_rows))
    return count, first, nan, inf, over, bad[first]


#: How :func:`non_finite_data` advises to fix the gaps of an input, of an input an Embedding (or
#: CategoryEncoding) looks up, and of targets: what to do with the rows, and how to fill them.
_MEAN_FILL = ("Drop or impute", ", or fill the gaps with the training-split mean.")
_ID_FILL = ("Drop or impute", ", or give the missing ids an id of their own (one past the largest, and the table one row larger): "
            "they are ids, which no mean stands for.")
_LABEL_FILL = ("Drop", ": a missing label has no value to fill in (a mean is no class, and for a regression a made-up target); "
               "predict those rows once the model is trained.")


def non_finite_data(ctx: DataContext) -> Issue | None:
    """NaN or Inf anywhere in x, y or the validation data."""
    # The rows validation_split held out are the caller's x, y and sample_weight from split_at
    # on: "x_val ... row 30" named an array the caller never had (the NaN was x's row 190).
    split = ctx.split_at is not None
    val_x, val_w = ("x", "sample_weight") if split else ("x_val", "val_sample_weight")
    # How the gaps of each array may be filled. A mean is no value for a label (0.4 is no class; a
    # regression's would be a made-up target) nor for an id an Embedding looks up (2547.3 is no
    # product): the first were told "fill the gaps with the training-split mean" all the same.
    ids = {index for index, *_ in ctx.embeddings}
    fills = [_ID_FILL if i in ids else _MEAN_FILL for i in range(max(len(ctx.xs), len(ctx.x_val or ())))]
    arrays: list[tuple[str, np.ndarray, bool, tuple[str, str]]] = [
        (input_label("x", i, len(ctx.xs), ctx.input_keys), a, False, fills[i]) for i, a in enumerate(ctx.xs)]
    arrays += [(t.name, t.y, False, _LABEL_FILL) for t in ctx.targets if t.y is not None]
    if ctx.x_val:
        arrays += [(input_label(val_x, i, len(ctx.x_val), ctx.x_val_keys), a, True, fills[i]) for i, a in enumerate(ctx.x_val)]
    arrays += [(t.name if split else validation_name(t.name), t.y_val, True, _LABEL_FILL) for t in ctx.targets if t.y_val is not None]
    if ctx.sample_weight is not None:  # a NaN weight makes the loss NaN as surely as a NaN input
        arrays.append(("sample_weight", ctx.sample_weight, False, _MEAN_FILL))
    if ctx.val_sample_weight is not None:  # and val_loss NaN, which early stopping then never improves on
        arrays.append((val_w, ctx.val_sample_weight, True, _MEAN_FILL))
    for name, a, validation, fill in arrays:
        count, first, nan, inf, over, bad = _non_finite(a)
        if not count or bad is None:
            continue
        col = ""
        if a.ndim == 2:
            col = f", column {int(np.argmax(bad))}"
        # Validation rows update no weight: val_loss is what breaks.
        effect = "val_loss NaN every epoch" if validation else "the loss NaN at the first step that sees it, and from then on every weight"
        first_row, plural = first + (ctx.split_at if validation and split else 0), "s" if count != 1 else ""
        what = "NaN or Inf values" if not over else "values beyond float32's range" if not nan + inf else "NaN, Inf or values beyond float32's range"
        if split:
            among = f" among the {len(a)} rows validation_split holds out" if validation else f" among its first {len(a)} rows, the training rows"
            found = f"{name} has {count} row{plural} with {what}{among}"
        else:
            found = f"{name} has {count} row{plural} of {len(a)} with {what}"
        counts, keep, why = f"{nan} NaN, {inf} Inf", f"np.isfinite({name})", "One such value"
        if over:
            # Finite as the caller holds them: they become Inf in the float32 tensors fit trains on.
            value = float(a.reshape(len(a), -1)[first][bad][0])
            col += f": {value:.4g}" if math.isfinite(value) else ""
            counts = f"{over} beyond ±{_FLOAT32_MAX:.3g}" + (f", {counts}" if nan + inf else "")
            keep = f"(np.abs({name}) <= np.finfo(np.float32).max)"
            why = "Finite as float64, such values become Inf when the data is narrowed to float32, the model's dtype: one"
        return Issue(
            f"{found}{ctx.where} ({counts}; the first at row {first_row}{col}). {why} makes {effect}.",
            (f"Rescale those values into float32's range (other units, a log) or drop those rows, e.g. keep = {keep}.all(axis=tuple(range(1, {name}.ndim))) "
             "and index x and y with it." if over else
             f"{fill[0]} those rows before fit, e.g. keep = {keep}.all(axis=tuple(range(1, {name}.ndim))) "
             f"and index x and y with it{fill[1]}"),
            {"array": name, "rows": count, "first_row": first_row, "nan": nan, "inf": inf, "float32_overflow": over, "total_rows": len(a)})
    return None


#: The largest float16: a layer computing in float16 (``mixed_float16``) makes inf of larger inputs.
_FLOAT16_MAX = float(np.finfo(np.float16).max)
#: The smallest magnitude a cast to float16 makes inf: the largest float16 plus half its last step
#: (32). Values between the two round down to 65,504, finite, and fit was refused for them.
_FLOAT16_OVERFLOW = _FLOAT16_MAX + 16.0


def float16_overflow(ctx: DataContext) -> Issue | None:
    """Input values beyond float16's range read by a layer that computes in float16.

    Under ``mixed_float16`` a layer casts its inputs to float16 first: raw amounts ~1e5 become inf
    there, even in a Normalization layer adapted to scale them, and the first step's loss was NaN
    with advice about learning rates and log(0).
    """
    readers = ctx.float16_readers
    ids = {embedding[0] for embedding in ctx.embeddings}  # ids an Embedding looks up are never cast
    split = ctx.split_at is not None  # validation_split's rows are the caller's x from split_at on
    inputs = [("x", i, a, ctx.input_keys, 0) for i, a in enumerate(ctx.xs)]
    inputs += [("x" if split else "x_val", i, a, ctx.input_keys if split else ctx.x_val_keys, ctx.split_at or 0)
               for i, a in enumerate(ctx.x_val or [])]
    for base, i, a, keys, offset in inputs:
        layer = readers[i] if len(readers) == len(ctx.xs) else None
        if layer is None or i in ids or not isinstance(a, np.ndarray) or a.dtype.kind not in "fiu" or a.size == 0:
            continue
        with np.errstate(invalid="ignore"):
            magnitude = np.abs(a.reshape(len(a), -1).astype(np.float64, copy=False))
            over = np.isfinite(magnitude) & (magnitude >= _FLOAT16_OVERFLOW)
        count = int(over.sum())
        if not count:
            continue
        row, column = (int(v) for v in np.unravel_index(int(np.argmax(over)), over.shape))
        validation = a is not ctx.xs[i]
        name = input_label(base, i, len(ctx.xs), keys)
        where = ctx.val_where if validation else ctx.where
        value = format_number(float(a.reshape(len(a), -1)[row, column]))
        return Issue(
            f"{name} holds {count} value{'s' if count != 1 else ''} beyond float16's range (±65,504){where}, the first at row "
            f"{row + offset}, column {column}: {value}. Layer '{layer}' reads it and computes in float16 (the mixed_float16 "
            "policy), so it casts them to inf before anything else, a Normalization layer adapted to scale them too: "
            f"{'val_loss is NaN' if validation else 'the loss is NaN from the first step that sees one'}.",
            f"Build the layer that reads the raw inputs ('{layer}') with dtype='float32' (keras.layers.Normalization(dtype='float32'), "
            "for one: it then scales them in float32 and hands float16 on); or scale the inputs before the model; or use "
            "keras.mixed_precision.set_global_policy('mixed_bfloat16'), whose range is float32's.",
            {"input": i, "array": name, "values": count, "first_row": row + offset, "layer": layer, "float16_max": _FLOAT16_MAX})
    return None


def embedding_ids(ctx: DataContext) -> Issue | None:
    """Inputs an Embedding looks up (training or validation) that are not whole numbers in ``[0, input_dim)``."""
    # The validation inputs go through the same lookup after each epoch: an id outside the table
    # would crash there, an epoch's training in, with TensorFlow's gather error.
    arrays = [("x", ctx.xs, ctx.input_keys, ctx.where)]
    if ctx.x_val:
        arrays.append(("x_val", ctx.x_val, ctx.x_val_keys, ctx.val_where))
    for (base, xs, keys, where), (index, layer, dim, kind) in itertools.product(arrays, ctx.embeddings):
        if index >= len(xs) or xs[index].size == 0 or not np.issubdtype(xs[index].dtype, np.number):
            continue
        a = xs[index]
        name = input_label(base, index, len(xs), keys) + where
        lo, hi = float(np.min(a)), float(np.max(a))
        embedding = kind == "Embedding"
        if not is_integral(a):
            reads = "looks its input up as row ids of its table" if embedding else "counts its input as category ids"
            return Issue(f"{name} feeds the {kind} '{layer}' but holds non-integer values ({format_number(lo)}..{format_number(hi)}): an {kind} {reads}, "
                         f"so 2.7 is read as 2.",
                         f"Pass the token or category ids as integers; for real-valued features use a Dense layer instead of an {kind}.",
                         {"min": lo, "max": hi}, layer)
        if lo < 0 or hi >= dim:
            if embedding:
                fix = (f"Use Embedding(input_dim={int(hi) + 1}, ...) if there are {int(hi) + 1} ids, or map the ids to 0..{dim - 1} "
                       "(keep 0 for padding if the model masks it).")
                if lo < 0:
                    # No input_dim takes a negative id: "Use Embedding(input_dim=200, ...)" was told
                    # for -1 padding into a table of 200 rows, the size it already had.
                    fix = f"No input_dim gives a negative id a row: map the ids into 0..{dim - 1}."
                    if lo == -1:
                        fix += (" If -1 marks padding or an unknown token, shift every id up by one (x + 1: -1 becomes 0) and "
                                f"use Embedding(input_dim={int(hi) + 2}, ...), with mask_zero=True if 0 is then padding.")
                why = "an id outside them has no row (TensorFlow fails on it, or reads a row of zeros)"
                if -dim <= lo < 0 and hi < dim:
                    # Keras' take() counts a negative index from the end: model.fit trains on them in
                    # silence, and "TensorFlow fails on it" was told of -1 padding it never failed on.
                    why = (f"Keras reads a negative id from the table's end, in silence: -1 is row {dim - 1}, the row of id {dim - 1}, "
                           "so the two cannot be told apart")
                return Issue(f"{name} holds ids {format_number(lo)}..{format_number(hi)}, but the Embedding '{layer}' has {dim} rows (ids 0..{dim - 1}): "
                             f"{why}.",
                             fix, {"min": lo, "max": hi, "input_dim": dim}, layer)
            # model.fit trains on such ids in silence: each is encoded as no category at all.
            return Issue(f"{name} holds ids {format_number(lo)}..{format_number(hi)}, but the CategoryEncoding '{layer}' has {dim} categories "
                         f"(ids 0..{dim - 1}): an id outside them is encoded as no category, a row of zeros the model cannot tell apart.",
                         f"Use CategoryEncoding(num_tokens={int(hi) + 1}, ...) if there are {int(hi) + 1} ids, or map the ids to 0..{dim - 1}.",
                         {"min": lo, "max": hi, "num_tokens": dim}, layer)
    return _lookup_past_table(ctx)


def lookup_not_adapted(ctx: DataContext) -> Issue | None:
    """A lookup layer of the model (``TextVectorization``, ``StringLookup``, ``IntegerLookup``) that holds no vocabulary.

    Never adapted nor given a ``vocabulary``, its table is empty: the first step failed while
    the step was traced, with TensorFlow's FailedPreconditionError "Table not initialized" from
    deep inside trainkit's probe, which named neither the layer nor ``adapt``.
    """
    for lookup in ctx.lookups:
        if lookup.adapted:
            continue
        data = "the training texts" if lookup.kind != "IntegerLookup" else "the training ids"
        return Issue(f"The {lookup.kind} '{lookup.name}' holds no vocabulary (it was never adapted, nor given vocabulary=...): "
                     "it cannot turn a token into an id, and TensorFlow fails on its first call (\"Table not initialized\").",
                     f"Adapt it on {data} before training, and on them only (not the validation or test rows, whose words "
                     f"would then look known): {lookup.name}.adapt(x_train); or build it with vocabulary=[...].",
                     {"vocabulary_size": 0}, lookup.name)
    return None


def _lookup_past_table(ctx: DataContext) -> Issue | None:
    """A lookup layer of the model whose vocabulary gives ids past the table of the Embedding after it.

    Its ids are made inside the model, out of the checks' sight: a ``TextVectorization`` adapted
    to 30 tokens before an ``Embedding(20, ...)`` trained until a batch held id 23, and then was
    told of "a batch read during training" past "a dataset's first batches" for numpy texts.
    """
    for lookup in ctx.lookups:
        for layer, dim in lookup.embeddings:
            if lookup.vocabulary <= dim:
                continue
            return Issue(f"The {lookup.kind} '{lookup.name}' gives ids 0..{lookup.vocabulary - 1} (its vocabulary_size() is {lookup.vocabulary}, "
                         f"the padding and OOV ids included), but the Embedding '{layer}' that looks them up has {dim} rows (ids 0..{dim - 1}): "
                         "an id outside them has no row (TensorFlow fails on the first batch that holds one, or reads a row of zeros).",
                         f"Use Embedding(input_dim={lookup.name}.vocabulary_size(), ...) ({lookup.vocabulary}), built after adapting the layer, "
                         f"or cap the vocabulary at the table: max_tokens={dim} in the {lookup.kind}.",
                         {"vocabulary_size": lookup.vocabulary, "input_dim": dim}, layer)
    return None


#: Rows with a 0 between other ids, of those read, from which 0 is taken for a token (not padding).
MASKED_INSIDE_SHARE = 0.05


def _sampled_tokens(a: np.ndarray, min_positions: int, sample_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(token, seen_from_start, seen_from_end)`` over sampled rows of ``a``, 2-D numeric ids of
    ``min_positions`` or more a row: where an id is not 0 (padding), and where a token came at or
    before the position, and at or after it; ``None`` for any other array.

    A million ids at most, as the scale checks read: all 100k rows of 200 ids took 0.19 s.
    """
    if a.ndim != 2 or a.shape[1] < min_positions or a.size == 0 or not np.issubdtype(a.dtype, np.number):
        return None
    token = strided_rows(a, row_budget(a, sample_rows)) != 0
    return token, np.logical_or.accumulate(token, axis=1), np.logical_or.accumulate(token[:, ::-1], axis=1)[:, ::-1]


def masked_ids_inside(ctx: DataContext) -> Issue | None:
    """An Embedding with ``mask_zero=True`` whose training ids hold 0 between other ids in many rows.

    The mask takes every 0 for padding, which sits at one end of a row (``pad_sequences``, pre or
    post). A 0 between other ids is a token, which the mask drops from every pooling average and
    recurrent step: ids 0..19 with the label "the row holds token 0" stayed at chance (loss 0.689,
    "the labels are unpredictable") where the same model without the mask reached 100% validation
    accuracy.
    """
    for index, layer, dim, _ in ctx.embeddings:
        if layer not in ctx.masked_embeddings or index >= len(ctx.xs):
            continue
        a = ctx.xs[index]
        found = _sampled_tokens(a, 3, ctx.sample_rows)
        if found is None:
            continue
        token, before, after = found
        inside = (~token & before & after).any(axis=1)
        share = float(inside.mean())
        if share < MASKED_INSIDE_SHARE:
            continue
        first = int(np.argmax(inside)) * max(1, math.ceil(len(a) / max(1, len(token))))
        name = input_label("x", index, len(ctx.xs), ctx.input_keys) + ctx.where
        return Issue(
            f"{name} feeds the Embedding '{layer}', built with mask_zero=True, which takes every id 0 for padding; but "
            f"{share:.0%} of the rows hold 0 between other ids (the first at row {first}), where no padding goes: 0 is "
            "a token there, and the mask drops it from every pooling average and recurrent step.",
            # Before padding: x + 1 on padded rows turns their padding into token 1, which the mask then keeps.
            f"Keep 0 for padding only: shift the token ids by one before padding the rows (x + 1 on unpadded rows, then "
            f"pad with 0; Embedding(input_dim={dim + 1}, mask_zero=True)), or build the Embedding with mask_zero=False if "
            "the rows are not padded.",
            {"rows_with_inner_zero": share, "first_row": first}, layer)
    return None


#: The share of an averaged Embedding's positions that are padding from which the average is mostly padding.
UNMASKED_PADDING_SHARE = 0.75


def unmasked_padding(ctx: DataContext) -> Issue | None:
    """An input an ``Embedding(mask_zero=False)`` reads, averaged by a ``GlobalAveragePooling1D``,
    whose rows are mostly padding: runs of id 0 at one end of the rows (``pad_sequences``, pre or
    post) over at least :data:`UNMASKED_PADDING_SHARE` of the positions.

    Without a mask the pooling averages the padding's vector in with the tokens', so a row's
    tokens weigh only their share of its mean: sentences of ~11 tokens padded to 200 stayed at
    the loss's chance level (0.692 of 0.693 after 10 epochs, at 99% validation accuracy) and were
    told the labels were unpredictable, where mask_zero=True fell steadily (0.648).
    """
    for index, layer, _, _ in ctx.embeddings:
        pool = ctx.averaged_embeddings.get(layer)
        if pool is None or index >= len(ctx.xs):
            continue
        found = _sampled_tokens(ctx.xs[index], 8, ctx.sample_rows)
        if found is None:
            continue
        # The padding at either end: the zeros before a row's first token and after its last.
        before, after = ~found[1], ~found[2]
        share = float((before | after).mean())
        if share < UNMASKED_PADDING_SHARE:
            continue
        post = float(after.mean()) > float(before.mean())
        name = input_label("x", index, len(ctx.xs), ctx.input_keys) + ctx.where
        return Issue(
            f"{share:.0%} of the positions of {name} are padding (id 0, {'after' if post else 'before'} the tokens), and the Embedding "
            f"'{layer}' that reads them masks nothing (mask_zero=False): '{pool}' averages the padding's vector in with the tokens', "
            f"so a row's tokens make only ~{1 - share:.0%} of its mean and the model learns slowly, if at all.",
            "Build the Embedding with mask_zero=True (0 kept for padding only), so that the average reads the real tokens only; or "
            "pad to a length near the rows' own (pad_sequences(..., maxlen=...), output_sequence_length in a TextVectorization).",
            {"padding_share": share}, layer)
    return None


def empty_masked_rows(ctx: DataContext) -> Issue | None:
    """Rows (training or validation) of padding alone (every id 0) into an ``Embedding(mask_zero=True)``
    whose vectors a ``GlobalAveragePooling1D`` averages: it averages such a row over no position,
    0 / 0, and the loss is NaN from the first batch that holds one (empty texts: 5% of the rows
    made the first step's loss NaN, told only to check the weights and the losses' log(0))."""
    arrays = [("x", ctx.xs, ctx.input_keys, ctx.where)]
    if ctx.x_val:
        arrays.append(("x_val", ctx.x_val, ctx.x_val_keys, ctx.val_where))
    for (base, xs, keys, where), (index, layer, _, _) in itertools.product(arrays, ctx.embeddings):
        pool = ctx.masked_averaged_embeddings.get(layer)
        if pool is None or index >= len(xs):
            continue
        a = xs[index]
        if a.ndim != 2 or a.size == 0 or not np.issubdtype(a.dtype, np.number):
            continue
        empty = ~(a != 0).any(axis=1)
        if not empty.any():
            continue
        label = input_label(base, index, len(xs), keys)
        name = label + where
        labels = "y" if base == "x" else "y_val"
        weighted = (ctx.sample_weight if base == "x" else ctx.val_sample_weight) is not None
        # x = x[...] is a TypeError on a dict or list of inputs: keep the same rows of each, and of
        # the sample weights (left whole, they no longer matched the rows: refused again).
        weights = ("" if not weighted else ", sample_weight = sample_weight[keep]" if base == "x" else
                   ", and the rows [keep] of its sample weights")
        keep = (f"keep = ({label} != 0).any(axis=1), then {base}, {labels} = {base}[keep], {labels}[keep]{weights}" if len(xs) == 1 else
                f"keep = ({label} != 0).any(axis=1), then the rows [keep] of every input of {base} and of {labels}"
                + (" and of the sample weights" if weighted else ""))
        if where:
            # A dataset's rows take no numpy indexing: filter its elements, whatever they hold.
            keep = ("in the pipeline, before .batch(): dataset.filter(lambda x, *rest: tf.reduce_any("
                    f"{input_label('x', index, len(xs), keys)} != 0))")
        return Issue(f"{name} holds {int(empty.sum())} rows of padding alone (every id 0; the first is row {int(np.argmax(empty))}): the "
                     f"Embedding '{layer}' masks all of their positions (mask_zero=True), and '{pool}' averages them over none, 0 / 0, "
                     "so the loss is NaN from the first batch that holds one.",
                     f"Drop the empty rows ({keep}), or give them a token of their "
                     "own (an id for 'empty', or the OOV id) before padding.",
                     {"empty_rows": int(empty.sum())}, layer)
    return None
