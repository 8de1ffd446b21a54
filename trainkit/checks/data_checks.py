"""Fit-time data checks: labels vs task and loss, scales, NaN/Inf, shapes, overlap, leakage.

This module lists the rules and runs them. Each rule is a small named function over a
:class:`~trainkit.checks.data_context.DataContext` returning an
:class:`~trainkit.checks.compatibility.Issue` or ``None`` (in ``shape_checks``, ``value_checks``,
``label_checks``, ``row_checks``, ``scale_checks``, ``leakage_checks`` and ``split_checks``), registered in
:data:`DATA_RULES` in the order they are tried. :data:`DATA_ERROR_CODES`,
:data:`DATA_WARNING_CODES` and :data:`DATA_INFO_CODES` list the codes.

Cost: numpy arrays are checked fully where the check is linear and cheap (NaN/Inf, label values,
ranges); the scale statistics, train/validation overlap and leakage read a strided sample of at
most ``sample_rows`` rows (fewer for wide rows). A ``tf.data.Dataset`` (or a ``keras.utils.PyDataset``)
is judged by its first ``sample_batches`` batches: inside ``fit``, the ones the trainer already
read and keeps (a :class:`~trainkit.checks.data_sampling.DatasetSample`); called on a dataset,
through a fresh iterator, so the iterator the training loop uses later is untouched.
"""

from __future__ import annotations

import dataclasses
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
    input_arrays,
    input_keys,
    keras_rank,
    label_arrays,
    numpy_floats,
    row_weight_array,
    targets_without_output,
    unnamed_per_output,
)
from trainkit.checks.data_context import DEFAULT_SAMPLE_ROWS, DataContext, Target, input_label
from trainkit.checks.data_sampling import (
    DatasetSample,
    dataset_drawn,
    dataset_facts,
    dataset_shuffle_short,
    file_paths,
    further_rows,
    is_batch_source,
    pydataset_name,
    random_ops,
    sample_first_batches,
    shuffled_apart,
    shuffled_apart_by_directory,
)
from trainkit.checks.label_checks import (
    constant_targets,
    label_format,
    labels_out_of_range,
    single_class,
)
from trainkit.checks.leakage_checks import (
    label_leakage,
    one_feature_separates,
    train_validation_overlap,
)
from trainkit.checks.model_inspect import (
    OutputInfo,
    application_base,
    averaged_embeddings,
    batch_only_batchnorms,
    embedding_inputs,
    find_outputs,
    float16_readers,
    input_masking,
    input_names,
    input_normalizers,
    input_row_normalizers,
    input_shapes,
    iter_layers,
    layout_readers,
    lookup_layers,
    masked_embeddings,
    position_keeping_layers,
    scales_own_inputs,
)
from trainkit.checks.row_checks import (
    batch_larger_than_data,
    batchnorm_batch_of_one,
    class_imbalance,
    few_training_rows,
    sample_weight_all_zero,
    sample_weight_negative,
    shuffled_apart_rows,
    stateful_shuffled,
    unshuffled_dataset,
)
from trainkit.checks.scale_checks import constant_inputs, unscaled_inputs, unscaled_targets
from trainkit.checks.shape_checks import channels_first_input, input_structure_issue, shape_mismatch
from trainkit.checks.split_checks import (
    validation_augmented,
    validation_class_mismatch,
    validation_scale_mismatch,
    validation_target_range,
)
from trainkit.checks.value_checks import (
    embedding_ids,
    empty_masked_rows,
    float16_overflow,
    lookup_not_adapted,
    masked_ids_inside,
    non_finite_data,
    unmasked_padding,
)
from trainkit.errors import DataError
from trainkit.findings import Finding, Severity


@dataclasses.dataclass(frozen=True)
class DataRule:
    """A registered data rule: stable code, severity and function."""

    code: str
    severity: Severity
    check: Callable[[DataContext], Issue | None]


#: Every data rule, in the order they are tried; the first error wins.
DATA_RULES: tuple[DataRule, ...] = (
    DataRule("shape-mismatch", "error", shape_mismatch),
    DataRule("non-finite-data", "error", non_finite_data),
    DataRule("float16-overflow", "error", float16_overflow),
    DataRule("label-format", "error", label_format),
    DataRule("single-class", "error", single_class),
    DataRule("constant-targets", "error", constant_targets),
    DataRule("sample-weight-all-zero", "error", sample_weight_all_zero),
    DataRule("sample-weight-negative", "error", sample_weight_negative),
    DataRule("lookup-not-adapted", "error", lookup_not_adapted),
    DataRule("embedding-ids", "error", embedding_ids),
    DataRule("empty-masked-rows", "error", empty_masked_rows),
    DataRule("labels-out-of-range", "error", labels_out_of_range),
    DataRule("channels-first-input", "warning", channels_first_input),
    DataRule("masked-ids-inside", "warning", masked_ids_inside),
    DataRule("unmasked-padding", "warning", unmasked_padding),
    DataRule("constant-inputs", "warning", constant_inputs),
    DataRule("unscaled-inputs", "warning", unscaled_inputs),
    DataRule("unscaled-targets", "warning", unscaled_targets),
    DataRule("train-validation-overlap", "warning", train_validation_overlap),
    DataRule("validation-class-mismatch", "warning", validation_class_mismatch),
    DataRule("validation-target-range", "warning", validation_target_range),
    DataRule("validation-scale-mismatch", "warning", validation_scale_mismatch),
    DataRule("validation-augmented", "warning", validation_augmented),
    DataRule("label-leakage", "warning", label_leakage),
    DataRule("shuffled-apart", "warning", shuffled_apart_rows),
    DataRule("unshuffled-dataset", "warning", unshuffled_dataset),
    DataRule("class-imbalance", "warning", class_imbalance),
    DataRule("few-training-rows", "warning", few_training_rows),
    DataRule("batch-larger-than-data", "warning", batch_larger_than_data),
    DataRule("stateful-shuffled", "warning", stateful_shuffled),
    DataRule("batchnorm-batch-of-one", "warning", batchnorm_batch_of_one),
    DataRule("one-feature-separates", "info", one_feature_separates),
)
DATA_ERROR_CODES: tuple[str, ...] = tuple(r.code for r in DATA_RULES if r.severity == "error")
DATA_WARNING_CODES: tuple[str, ...] = tuple(r.code for r in DATA_RULES if r.severity == "warning")
DATA_INFO_CODES: tuple[str, ...] = tuple(r.code for r in DATA_RULES if r.severity == "info")
#: The rules that hold for any data a model is run on, evaluation data included: the others judge
#: data to train on (one class, few rows, leakage, scales).
EVALUATION_CODES: frozenset[str] = frozenset({
    "shape-mismatch", "non-finite-data", "float16-overflow", "label-format", "labels-out-of-range", "sample-weight-all-zero", "sample-weight-negative", "lookup-not-adapted", "embedding-ids", "empty-masked-rows"})
def stateful_recurrent_layers(model: Any) -> tuple[str, ...]:
    """The names of the model's ``stateful=True`` recurrent layers (a ``Bidirectional``'s, not its halves')."""
    layers = [layer for layer in model._flatten_layers(include_self=False)
              if getattr(layer, "stateful", False) and isinstance(layer, keras.layers.RNN | keras.layers.Bidirectional)]
    halves = {id(half) for layer in layers if isinstance(layer, keras.layers.Bidirectional) for half in (layer.forward_layer, layer.backward_layer)}
    return tuple(layer.name for layer in layers if id(layer) not in halves)


#: Code of the info finding returned when the data cannot be read without consuming it.
DATA_NOT_INSPECTABLE = "data-not-inspectable"


def _loss_positions(model: Any, xs: list[np.ndarray], targets: list[Any]) -> np.ndarray | None:
    """``[rows, T]``: the positions of the one input's rows the loss reads, where the model's one
    output keeps that input's mask (an ``Embedding(mask_zero=True)``'s or a ``Masking`` layer's:
    a masked tagger, whose loss reads the real steps only), else ``None``.

    The model is called to tell (on a few rows), so only for labels a position each of that input
    (``[rows, T, ...]``), the one case the answer is read: a pooled text classifier with
    mask_zero=True (BiLSTM and attention, 20,000 rows of 100 ids) took 1.1 s of check_data
    instead of 0.5 s for it.
    """
    # Imported here: trainkit.diagnosis imports trainkit.checks, and a module-level import made
    # `import trainkit.diagnosis` (and so `trainkit diagnose`) fail on the cycle.
    from trainkit.diagnosis.masked_positions import loss_positions, masks_inputs

    if len(xs) != 1 or len(targets) != 1 or not masks_inputs(model):
        return None
    y = targets[0].y
    if y is None or y.ndim < 2 or xs[0].ndim < 2 or y.shape[:2] != xs[0].shape[:2]:
        return None
    if isinstance(model, keras.Sequential) and not (model.built and model.variables):
        # An unbuilt Sequential has no input to call it on, and every position counted: a masked
        # tagger's targets padded with -100 were told "mean -85 and std 35.72" (unscaled-targets)
        # when built later by the fit. A copy of it built for these rows, as the fit builds it,
        # has the same mask; the model itself is left unbuilt.
        model = _built_copy(model, xs[0])
        if model is None:
            return None
    return loss_positions(model, xs[0])[1]


def _built_copy(model: keras.Sequential, rows: np.ndarray) -> keras.Sequential | None:
    """A copy of an unbuilt ``Sequential`` built for ``rows`` (new weights), or ``None`` where it
    cannot be made (a layer without a config). Python's ``random`` state is put back: the copy's
    initializers draw their seeds from it, which later layers' seeds would miss."""
    import random

    state = random.getstate()
    try:
        # In native byte order: keras.Input refuses a big-endian ">i4" ("Invalid dtype: >i4"), and
        # such ids' padded targets all counted again, where the built model's read its mask.
        dtype = rows.dtype.newbyteorder("=").name
        return keras.models.clone_model(model, input_tensors=keras.Input(rows.shape[1:], dtype=dtype))
    except Exception:  # any layer's failure to copy or build: its mask stays unknown, as before
        return None
    finally:
        random.setstate(state)


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
    val_sample_weight: Any = None,
    feature_names: Sequence[str] | None = None,
    skip: Collection[str] = (),
    split_at: int | None = None,
    shuffle: bool | str | None = None,
) -> list[Finding]:
    """Checks the data against the task, the loss and the model before the first step.

    Args:
        x: Inputs: a numpy array (or list/dict of arrays for several inputs), or a
            ``tf.data.Dataset``/``keras.utils.PyDataset`` yielding ``(x, y)`` or ``(x, y, w)``,
            or a :class:`~trainkit.checks.data_sampling.DatasetSample` of such a dataset's first
            batches.
        y: Labels for array inputs (a list/dict for several outputs); ``None`` with a dataset.
        model: The model (its inputs, outputs and output activations are read; it is called on
            a few rows only for a masked tagger's labels, to see whether its output keeps the mask).
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
        val_sample_weight: The validation rows' weights, when ``validation_data`` gave some
            (``sample-weight-all-zero`` refuses them all 0: every validation value would read 0).
        skip: Codes of rules not to run (``constant-targets`` for a step of its own, whose
            targets may be placeholders).
        split_at: ``x_val``/``y_val`` are the caller's ``x``/``y`` from this row on, held out by
            ``fit(validation_split=...)``: a bad value there is named by the caller's array and row.
        shuffle: ``fit(shuffle=...)`` of numpy training rows, for ``stateful-shuffled``; ``None`` skips that check.

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
    batch_rows: tuple[int, ...] = ()
    shuffled, cardinality = dataset_facts(x)
    drawn = dataset_drawn(x)  # a shuffle whose buffer holds every row: its first batches are a random draw
    short = dataset_shuffle_short(x)  # or one whose buffer holds fewer: drawn from its first rows
    read_further = inputs_vary = None
    # Read before sampling: the sample keeps no pipeline.
    apart = tuple(name for name, data in (("x", x), ("validation_data", x_val))
                  if is_batch_source(data) and shuffled_apart(data.dataset if isinstance(data, DatasetSample) else data))
    # Of those, the ones whose shuffling side a Keras *_dataset_from_directory made (shuffle=True by default).
    apart_files = tuple(name for name, data in (("x", x), ("validation_data", x_val))
                        if name in apart and shuffled_apart_by_directory(data.dataset if isinstance(data, DatasetSample) else data))
    paths = (file_paths(x), file_paths(x_val))  # read before sampling, as above
    pydataset = pydataset_name(x)  # so is the PyDataset the batches come from
    if is_batch_source(x):
        sampled = sample_first_batches(x, sample_batches, ranks)
        if sampled is None:
            return []
        further = further_rows(x, sampled[3], sampled[0]) if shuffled is False else None
        if further is not None:  # one read of the batches past those sampled, shared by the checks that ask
            read_further, inputs_vary = further.labels, further.inputs_vary
        x, y, dataset_weights, batches, batch_rows = sampled
        # Weights the dataset carries (with class_weight folded in by fit) weigh its sampled rows.
        sample_weight = dataset_weights if sample_weight is None else sample_weight
        where = f" in the first {batches} batch{'es' if batches != 1 else ''}"
    elif not isinstance(x, np.ndarray | Mapping | list | tuple) and hasattr(x, "__next__"):
        return [Finding(code=DATA_NOT_INSPECTABLE, severity="info",
                        message="x is an iterator: it cannot be sampled without consuming it, so the data checks were skipped.",
                        advice="Pass numpy arrays or a tf.data.Dataset to have the data checked.")]
    val_where = ""
    val_random: tuple[str, ...] = ()
    val_stands = val_drawn = val_all = True
    if is_batch_source(x_val):
        val_random = random_ops(x_val.dataset if isinstance(x_val, DatasetSample) else x_val) or ()
        _, val_batches = dataset_facts(x_val)
        sampled = sample_first_batches(x_val, sample_batches, ranks)
        if sampled:
            # Its first batches stand for its rows where they are all of them, a shuffling
            # pipeline's random draw, or half its batches at least (whatever its order, that half
            # lies beyond a random training sample only where the sample misses half the range).
            # Not a never-shuffled dataset's first few: 256 rows of 100,000 in time order with a
            # trend, randomly split, were told 'every validation target lies below every training
            # target ... a chance of 1e-150'.
            read = sampled[3]
            val_all = read < sample_batches or (val_batches is not None and read >= val_batches)
            val_drawn = val_all or (dataset_drawn(x_val) is True and pydataset_name(x_val) is None)
            val_stands = val_drawn or (val_batches is not None and 2 * read >= val_batches)
        x_val, y_val = (sampled[0], sampled[1]) if sampled else (None, None)
        val_where = f" in the first {sampled[3]} batch{'es' if sampled[3] != 1 else ''}" if sampled else ""
        if sampled and val_sample_weight is None and sampled[2] is not None:
            # The weights a validation dataset carries: NaN or negative ones broke val_loss unseen.
            val_sample_weight = sampled[2]
    names = input_names(model)
    xs = [numpy_floats(a) for a in input_arrays(x, names)]
    xv = [numpy_floats(a) for a in input_arrays(x_val, names)] if x_val is not None else None
    if shapes:  # as the model reads them: (n,) columns for keras.Input((1,)) ones, as (n, 1)
        xs = [keras_rank(a, s) for a, s in zip(xs, shapes, strict=False)] + xs[len(shapes):]
        xv = [keras_rank(a, s) for a, s in zip(xv, shapes, strict=False)] + xv[len(shapes):] if xv is not None else None
    for base, arrays in (("x", xs), ("x_val", xv or [])):
        for i, a in enumerate(arrays):
            if isinstance(a, np.ndarray) and a.ndim > 1 and len(a) and a.size == 0:
                # A Dense layer on zero features aborted the process in oneDNN ("could not create a
                # primitive descriptor"), and the scale checks' reductions raised before it.
                name = input_label(base, i, len(arrays), input_keys(x if base == "x" else x_val, names))
                raise DataError("data-empty", f"{name} has {len(a)} rows but no values in them (shape {a.shape}): the model has nothing to "
                                              "read. Check how it was built: a column selection that matched nothing, a slice past the last column.")
    ys = label_arrays(y, outputs)
    unmatched = targets_without_output(y, outputs, ys)
    ys = [numpy_floats(a) for a in ys]
    yvs = [numpy_floats(a) for a in label_arrays(y_val, outputs)] if y_val is not None else [None] * len(ys)
    unmatched_name = "y"
    if unmatched is None and y_val is not None:  # else "a batch has 3 targets", from the validation step's trace
        unmatched, unmatched_name = targets_without_output(y_val, outputs, yvs), "y_val"
    keys: list[str] | None = None  # a subclassed model's outputs, named by a dict of targets
    if outputs:
        losses, tasks = losses_per_output(outputs, loss), tasks_per_output(outputs, task)
    else:  # outputs unknown before a call (subclassed): by position (or y's keys), one per target
        keys = sorted(map(str, y)) if isinstance(y, Mapping) and len(y) == len(ys) > 1 else None
        losses = [describe_loss(one) for one in unnamed_per_output(loss, len(ys), keys)]
        tasks = unnamed_per_output(task, len(ys), keys)
    outs: list[OutputInfo | None] = list(outputs) if outputs else [None] * len(ys)
    if len(outs) == 1:
        label_names = ["y"]
    elif not outputs and keys:
        label_names = [f"y[{k!r}]" for k in keys]
    else:
        label_names = [f"y[{o.key or o.name!r}]" if o is not None else f"y[{i}]" for i, o in enumerate(outs)]
    # Where each target sits in y, for advice that maps a dataset's elements (label_map).
    entries: list[str | int | None] = [None] * len(ys)
    if len(ys) > 1 and isinstance(y, Mapping):
        entries = (list(keys) if not outputs and keys else
                   [o.key if o is not None and o.key in y else o.name if o is not None else None for o in outs])
    elif len(ys) > 1 and isinstance(y, list | tuple):
        entries = list(range(len(ys)))
    elif isinstance(y, Mapping) and len(y) == 1:  # one output's targets by its name: {'label': y}
        entries = [str(next(iter(y)))]
    targets = [Target(*parts) for parts in zip(outs, losses, ys, yvs, label_names, tasks, entries, strict=False)]
    # The validation inputs too: one missing there was Keras's "Missing data for input" from
    # inside the first validation step, after a whole epoch of training.
    unmatched_inputs = input_structure_issue(x, names) or (input_structure_issue(x_val, names, "x_val") if x_val is not None else None)
    ctx = DataContext(xs=xs, x_val=xv, targets=targets, input_shapes=shapes,
                      scales_inputs=scales_own_inputs(model), normalizers=input_normalizers(model),
                      row_normalizers=input_row_normalizers(model), where=where, sample_rows=sample_rows,
                      position_layers=position_keeping_layers(model), unmatched_inputs=unmatched_inputs,
                      unmatched_targets=unmatched, unmatched_targets_name=unmatched_name, sample_weight=row_weight_array(sample_weight), batch_size=batch_size,
                      shuffle=shuffle, stateful_layers=stateful_recurrent_layers(model),
                      val_sample_weight=row_weight_array(val_sample_weight) if x_val is not None else None, val_where=val_where,
                      embeddings=embedding_inputs(model), masked_embeddings=masked_embeddings(model), lookups=lookup_layers(model), averaged_embeddings=averaged_embeddings(model),
                      masked_averaged_embeddings=averaged_embeddings(model, masked=True), loss_positions=_loss_positions(model, xs, targets),
                      feature_names=tuple(feature_names) if feature_names else None,
                      input_keys=input_keys(x, names), x_val_keys=input_keys(x_val, names),
                      output_bias_values=output_bias_values(model, outputs),
                      split_at=split_at, layout_readers=layout_readers(model),
                      masking_values=input_masking(model),
                      batch_rows=batch_rows, dataset_shuffled=shuffled, dataset_drawn=drawn, dataset_shuffle_short=short, dataset_batches=cardinality, pydataset=pydataset,
                      further_labels=_per_output(read_further, outputs), further_inputs_vary=inputs_vary,
                      batch_norms=batch_only_batchnorms(model), float16_readers=float16_readers(model), val_random_ops=val_random, val_rows_stand_for_all=val_stands,
                      val_rows_drawn=val_drawn, val_rows_all=val_all,
                      application_base=application_base(model),
                      shuffled_apart=apart, shuffled_apart_files=apart_files, file_paths=paths)
    findings: list[Finding] = []
    for rule in DATA_RULES:
        if (evaluation and rule.code not in EVALUATION_CODES) or rule.code in skip:
            continue
        issue = rule.check(ctx)
        if issue is None:
            continue
        if rule.severity == "error" and rule.code not in allowed:
            raise DataError(rule.code, f"{issue.message} {issue.advice}")
        findings.append(to_finding(rule.code, rule.severity, issue))
    return findings


def _per_output(read: Callable[[], Any] | None, outputs: list[OutputInfo]) -> Callable[[], list[np.ndarray | None] | None] | None:
    """``read`` (the labels past a dataset's sampled batches, as the dataset gives them) made to
    give one array per output, as the targets hold theirs: a rare class the first batches missed
    was told "sorted by label" for a model with several outputs, whose labels come as a dict."""
    if read is None:
        return None

    def per_output() -> list[np.ndarray | None] | None:
        labels = read()
        return None if labels is None else [None if a is None else numpy_floats(a) for a in label_arrays(labels, outputs)]

    return per_output


def output_bias_values(model: Any, outputs: Sequence[OutputInfo]) -> dict[str, np.ndarray]:
    """The starting bias of each output's unit layer, one value a unit, by the layer's name (where it has one).

    ``unscaled-targets`` said "the output bias has to travel 1035 units" to a model whose bias was
    set to the target mean (``bias_initializer: {name: constant, value: 1035}``, as
    ``initial-loss-too-high`` advises): it reads their mean. A multilabel output's biases set to
    each label's log-odds (as ``class-imbalance`` advises) have a mean that tells nothing of them,
    so that check reads them unit by unit.
    """
    wanted = {o.layer for o in outputs}
    found: dict[str, np.ndarray] = {}
    for layer in iter_layers(model):
        bias = getattr(layer, "bias", None) if layer.name in wanted else None
        if bias is not None:
            try:
                found[layer.name] = np.asarray(keras.ops.convert_to_numpy(bias), dtype=np.float64)
            except Exception:  # a bias that cannot be read leaves the message as it was
                continue
    return found
