"""The ``shape-mismatch`` rule: x, y and sample_weight whose rows do not pair up, and inputs,
labels or weights whose shapes do not fit the model's inputs and outputs; the
``channels-first-input`` rule: channels-first images a channels-last layer reads.
:func:`check_input_shapes` runs the inputs' part alone, for evaluate and predict.

Apart from the rules on values: these read only the arrays' shapes and the data's structure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np

from trainkit.checks.compatibility import Issue
from trainkit.checks.data_arrays import input_arrays, input_keys, keras_rank
from trainkit.checks.data_context import (
    DataContext,
    Target,
    format_number,
    format_shape,
    input_label,
    label_map,
)
from trainkit.checks.model_inspect import input_names, input_shapes
from trainkit.errors import DataError, closest_match


def _fits(got: Sequence[int], expected: Sequence[int | None]) -> bool:
    return len(got) == len(expected) and all(e is None or e == g for g, e in zip(got, expected, strict=True))


def shape_mismatch(ctx: DataContext) -> Issue | None:
    """Row counts that differ, x that does not fit the model input, y that does not fit the output."""
    if ctx.unmatched_targets is not None:
        names = [t.output.key or t.output.name for t in ctx.targets if t.output is not None]
        y = ctx.unmatched_targets_name
        if len(names) == 1:
            # A model returning {"out": ...} also takes its targets under that key (as model.fit does).
            keyed = any(t.output is not None and t.output.key is not None for t in ctx.targets)
            how = f"as one array or a dict under the output's key ({{{names[0]!r}: {y}}})" if keyed else "as one array"
            return Issue(f"The model has one output ({names[0]}) but {y}{ctx.where} is {ctx.unmatched_targets}.",
                         f"Pass {y} {how} (targets by name are for a model with several outputs).", {"outputs": names})
        return Issue(f"The model has {len(names)} outputs ({', '.join(names)}) but {y}{ctx.where} is "
                     f"{ctx.unmatched_targets}: each output needs its own target.",
                     f"Pass one target per output, in the outputs' order: fit(x, [y_{names[0]}, "
                     f"y_{names[1]}, ...]) with numpy arrays, or a tf.data.Dataset yielding "
                     f"(x, (y_{names[0]}, y_{names[1]}, ...)).", {"outputs": names})
    if ctx.unmatched_inputs is not None:
        return ctx.unmatched_inputs
    rows = {input_label("x", i, len(ctx.xs), ctx.input_keys): len(a) for i, a in enumerate(ctx.xs)}
    rows.update({t.name: len(t.y) for t in ctx.targets if t.y is not None})
    weights = ctx.sample_weight
    if weights is not None:
        rows["sample_weight"] = len(weights)
    if len(set(rows.values())) > 1:
        listing = ", ".join(f"{k} has {v}" for k, v in rows.items())
        return Issue(f"The inputs and labels have different numbers of rows{ctx.where}: {listing}; "
                     f"each row of x needs exactly one row of y.",
                     "Pass x and y with the same first dimension (check the split or a dropped "
                     "header row).", {"rows": list(rows.values())})
    for name, w in (("sample_weight", weights), ("val_sample_weight", ctx.val_sample_weight)):
        if w is not None and w.ndim != 1:  # validation_data's (n, 2) weights failed in TensorFlow's Mul
            fix = "Pass one weight per row; to weigh several outputs differently use loss_weights."
            if _per_position_weights(ctx, w) and _sequence_output(ctx):
                # A tagger's (n, T) weights, 0 on the padding (Keras' temporal sample weights): the
                # pixel advice (focal losses, Dice) named no way to leave padding out.
                fix = ("Weights per timestep are not taken: a row's one weight weighs each of its timesteps. To leave padded "
                       "timesteps out of the loss, mask them: Embedding(..., mask_zero=True) on ids padded with 0 (or "
                       f"keras.layers.Masking) whose mask reaches the output{_padding_label(ctx)}.")
            elif _per_position_weights(ctx, w):
                # A segmentation's per-pixel weights (Keras' way of weighing classes there): "use
                # loss_weights" named no way to weigh pixels.
                fix = ("Weights per position (a weight a pixel) are not taken: a row's one weight weighs each of its positions. "
                       "To weigh pixels by their class, use a loss that does it: keras.losses.BinaryFocalCrossentropy("
                       "apply_class_balancing=True, alpha=...) for a sigmoid mask, CategoricalFocalCrossentropy(alpha=[...]) on "
                       "one-hot masks, or keras.losses.Dice(); for weights of your own, a loss that reads them from the targets.")
            return Issue(f"{name} has shape {format_shape(w.shape)}{ctx.where}, but it holds one weight per row: shape (n,) or (n, 1).",
                         fix, {"sample_weight_shape": list(w.shape)})
    for xs, label, keys, where in ((ctx.xs, "x", ctx.input_keys, ctx.where), (ctx.x_val or [], "x_val", ctx.x_val_keys, ctx.val_where)):
        issue = input_shape_issue(xs, ctx.input_shapes, label, keys, dataset=bool(where))
        if issue is not None:
            return issue
    for t in ctx.targets:
        issue = _label_shape_issue(t, ctx.xs, ctx.position_layers, bool(ctx.where))
        if issue is not None:
            return issue
    for t in ctx.targets:  # the validation targets: the loss compares them with the output as well
        if t.y_val is not None:
            issue = _label_shape_issue(dataclasses.replace(t, y=t.y_val, name="y_val" + t.name[1:]), ctx.x_val or (), ctx.position_layers,
                                       bool(ctx.val_where))
            if issue is not None:
                return issue
    return None


def _sequence_output(ctx: DataContext) -> bool:
    """Whether every output with positions predicts per timestep, ``[batch, T, k]``."""
    shapes = [t.output.shape for t in ctx.targets if t.output is not None and t.output.shape is not None and len(t.output.shape) >= 3]
    return bool(shapes) and all(len(shape) == 3 for shape in shapes)


def _padding_label(ctx: DataContext) -> str:
    """``', or a padding label ...'``: the way to leave a tagger's padding out through its labels,
    for the labels its loss takes; ``''`` where no Keras loss ignores a label (a binary tagger's)."""
    kinds = {t.loss.kind for t in ctx.targets if t.output is not None and t.output.shape is not None and len(t.output.shape) == 3}
    # np.where(w > 0, y, -1) is for class ids: on one-hot (n, T, k) labels it fails to broadcast.
    labels = {"sparse": "y", "categorical": "y.argmax(-1)"}.get(kinds.pop()) if len(kinds) == 1 else None
    if labels is None:
        return ""
    return (", or a padding label of its own that the loss ignores: keras.losses.SparseCategoricalCrossentropy(ignore_class=-1) "
            f"with y = np.where(w > 0, {labels}, -1)")


def _per_position_weights(ctx: DataContext, w: np.ndarray) -> bool:
    """Whether weights ``w`` hold one weight a position of an output that predicts per position
    (``(n, H, W)`` or ``(n, H, W, 1)`` for a ``(H, W, k)`` output)."""
    for t in ctx.targets:
        shape = t.output.shape if t.output is not None else None
        if shape is not None and len(shape) >= 3:
            positions = tuple(shape[1:-1])
            if _fits(w.shape[1:], positions) or _fits(w.shape[1:], (*positions, 1)):
                return True
    return False


def input_shape_issue(xs: Sequence[np.ndarray], input_shapes: Sequence[tuple[int | None, ...]] | None, label: str = "x",
                      keys: Sequence[str] | None = None, dataset: bool = False) -> Issue | None:
    """Inputs whose samples do not have the shape the model's inputs expect (``None`` if fine);
    ``dataset``: ``xs`` are a dataset's first batches (images of another size or channel count are
    told the ``image_dataset_from_directory`` arguments that read them so)."""
    if not input_shapes or len(input_shapes) != len(xs):
        return None
    for i, (a, shape) in enumerate(zip(xs, input_shapes, strict=True)):
        expected = shape[1:]
        if _fits(keras_rank(a, shape).shape[1:], expected):
            continue
        name = input_label(label, i, len(xs), keys)
        want = format_shape(expected) if expected else "()"
        moved = _moved_channel_axis(tuple(a.shape[1:]), expected)
        if moved is not None:
            # A reshape would keep the values in memory order and scramble every image; the
            # channel axis has to be moved.
            source, target, layout = moved
            fix = (f"{name} looks {layout}: move its channel axis, {name} = np.moveaxis({name}, {source}, {target}) "
                   f"(a reshape would scramble the pixels).")
        elif _fits(a.shape, expected) or (a.ndim == 1 and None not in expected and len(a) == int(np.prod(expected))):
            # One image given to predict, (28, 28, 1): it was told to build the model with
            # keras.Input(shape=(28, 1)), as if it were 28 samples.
            # A flat (784,) sample for a (28, 28, 1) input: x[None] is (1, 784), not the input's shape.
            one, how = (a.shape, f"{name}[None]") if _fits(a.shape, expected) else (expected, f"{name}.reshape(1, {', '.join(map(str, expected))})")
            fix = (f"The first axis of {name} counts samples; if {name} is one sample, pass {how} "
                   f"(shape {format_shape((1, *one))}).")
            if a.ndim == 2 and expected[0] is None:
                # (500, 8) for an LSTM's (None, 8) fits as one sequence of 500 steps just as well
                # as 500 rows of 8 features, the likelier mistake in a fit: both are said (an
                # (8, 8, 1) image for a (None, None, 1) input is one image).
                fix += f" If its rows are samples, give each the shape {want}, or build the model with keras.Input(shape={tuple(a.shape[1:])})."
        elif dataset and (image_fix := _image_dataset_fix(tuple(a.shape[1:]), expected)) is not None:
            fix = image_fix
        elif None not in expected and int(np.prod(a.shape[1:])) == int(np.prod(expected)):
            fix = f"Reshape it: {name} = {name}.reshape(len({name}), {', '.join(map(str, expected))})."
        elif a.ndim == 1:
            fix = f"The first axis of {name} counts samples: give it the shape (n, {', '.join('?' if d is None else str(d) for d in expected)})."
        else:
            fix = f"Give each sample the shape {want}, or build the model with keras.Input(shape={tuple(a.shape[1:])})."
        return Issue(f"{name} has shape {format_shape(a.shape)} but the model's input expects "
                     f"{format_shape(shape)}: each sample must have shape {want}.", fix,
                     {"x_shape": list(a.shape), "input_shape": list(shape)})
    return None


#: The ``color_mode`` of ``image_dataset_from_directory`` that reads images with so many channels.
_COLOR_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}


def _image_dataset_fix(got: tuple[int, ...], expected: Sequence[int | None]) -> str | None:
    """How to read a dataset's images (``got``: one image's shape, ``(H, W, C)``) at a
    channels-last image input's ``expected`` shape: the ``image_size`` and ``color_mode`` of
    ``image_dataset_from_directory``; ``None`` when they are not what differs.

    Its default image_size, (256, 256), and color_mode='grayscale' for an RGB model were told to
    "give each sample the shape (16, 16, 3)", or a reshape where the values happened to number alike.
    """
    if len(got) != 3 or len(expected) != 3:
        return None
    size, channels = expected[:2], expected[2]
    size_fits, channels_fit = _fits(got[:2], size), channels is None or got[2] == channels
    # Only where those two arguments mend all that differs.
    if (size_fits and channels_fit) or (not size_fits and None in size) or (not channels_fit and channels not in _COLOR_MODES):
        return None
    other_size, other_channels = not size_fits, not channels_fit
    arguments = ([f"image_size=({size[0]}, {size[1]})"] if other_size else []) + ([f"color_mode='{_COLOR_MODES[channels]}'"] if other_channels else [])
    resize = (f"; or keep them and resize in the model, keras.Input(shape={got}) then keras.layers.Resizing({size[0]}, {size[1]})"
              if other_size and not other_channels else "")
    return (f"Read the images at the model's input shape: {' and '.join(arguments)} in keras.utils.image_dataset_from_directory "
            f"(its defaults are image_size=(256, 256) and color_mode='rgb'){resize}; or build the model with keras.Input(shape={got}).")


def _moved_channel_axis(got: tuple[int, ...], expected: Sequence[int | None]) -> tuple[int, int, str] | None:
    """``(source, target, layout)`` for ``np.moveaxis`` when ``got`` is ``expected`` with its channel
    axis at the other end (images channels-first for a channels-last model, or the reverse).

    Only for more than one channel: one channel's axis moves with a reshape as well.
    """
    if len(got) < 3 or len(got) != len(expected) or None in expected:
        return None
    if got[0] > 1 and got == (expected[-1], *expected[:-1]):
        return 1, -1, "channels-first"
    if got[-1] > 1 and got == (*expected[1:], expected[0]):
        return -1, 1, "channels-last"
    return None


def check_input_shapes(x: Any, model: keras.Model) -> None:
    """Raises ``DataError(shape-mismatch)`` when array inputs do not fit the model's inputs.

    For :meth:`Trainer.evaluate` and :meth:`Trainer.predict`, which run no other data check.
    """
    names = input_names(model)
    issue = input_structure_issue(x, names) or input_shape_issue(input_arrays(x, names), input_shapes(model), keys=input_keys(x, names))
    if issue is not None:
        raise DataError("shape-mismatch", f"{issue.message} {issue.advice}")


def _label_shape_issue(t: Target, xs: Sequence[np.ndarray] = (), position_layers: Sequence[str] = (), dataset: bool = False) -> Issue | None:
    if t.y is None or t.output is None or t.output.shape is None or t.loss.kind is None:
        return None
    out = t.output.shape[1:]
    got = t.y.shape[1:]
    if _label_fits(t.loss.kind, got, out):
        return None
    unflattened = _unflattened_issue(t, xs, position_layers)
    if unflattened is not None:
        return unflattened
    layer = t.output.layer
    want = f"(n, {', '.join('?' if d is None else str(d) for d in out)})" if out else "(n,)"
    if (t.task == "binary" and t.loss.kind == "binary" and got == (2,) and tuple(out) == (1,) and _one_hot_rows(t.y)):
        # Dense(2) would give a binary task 2 sigmoid units, which the compatibility check refuses
        # (units-mismatch): the labels are the ones to change.
        fix = (f"{t.name} holds one-hot rows of the two classes: give the single {t.output.activation} unit the class-1 column, "
               + ("where the dataset is made (numpy's y[:, 1] cannot be applied to one): label_mode='binary' in "
                  f"keras.utils.image_dataset_from_directory, or {label_map(t, 'y[:, 1:]')}." if dataset else
                  f"{t.name} = {t.name}[:, 1] (or {t.name}.argmax(axis=1); in a recipe, data.one_hot: false)."))
    elif (t.task == "binary" and t.loss.kind == "binary" and len(got) == 1 and got[0] > 2 and tuple(out) == (1,)
          and _one_hot_rows(t.y)):
        # One-hot rows of 3 classes (label_mode='categorical' over 3 class folders) were told to
        # "change the output layer to Dense(3)": 3 sigmoid units, which a binary task refuses.
        k = got[0]
        fix = (f"{t.name} holds one-hot rows of {k} classes, and a binary task has 2: if there are {k} classes, declare "
               f"task='multiclass' with Dense({k}, activation='softmax') and CategoricalCrossentropy(); else keep the rows of "
               f"the two classes only.")
    elif _class_ids_for_labels(t, got, out):
        # Dense(1) for class ids 0..4 against a multilabel Dense(5) was no fix: each unit is one
        # label's yes/no and wants its own 0/1 column.
        k = out[-1]
        fix = (f"{t.name} holds one class id a row (values {format_number(float(np.min(t.y)))}..{format_number(float(np.max(t.y)))}), "
               f"but a multilabel output takes one 0/1 column a label: {t.name} = keras.utils.to_categorical({t.name}, {k}) "
               f"(several ids a row: a multi-hot row each, sklearn's MultiLabelBinarizer). If every row has exactly one class, "
               f"declare task='multiclass' with SparseCategoricalCrossentropy() and Dense({k}, activation='softmax') instead.")
    elif len(out) >= 2 and len(got) >= 2:
        # The output predicts per position (a segmentation's (H, W, k)) and the labels have positions
        # too: "change the output layer to Dense(32) to predict 32 value(s) per sample" (the mask's
        # width) was no fix for masks of another size, channels-first masks or class-id masks.
        fix = _position_labels_fix(t, got, out, want)
    elif got and out and got[-1] == out[-1]:  # the output layer's width is right: Dense(k) would change nothing
        fix = (f"The output layer already predicts {got[-1]} value(s) per position; the axes before that differ "
               f"({format_shape(got[:-1]) if len(got) > 1 else 'none'} in {t.name}, {format_shape(out[:-1]) if len(out) > 1 else 'none'} in the output). "
               f"Give {t.name} the shape {want}, or change the model so that its output has the labels' shape.")
    else:
        fix = (f"Give {t.name} the shape {want}, or change the output layer to Dense({got[-1] if got else 1}) "
               f"to predict {got[-1] if got else 1} value(s) per sample.")
    return Issue(
        f"{t.name} has shape {format_shape(t.y.shape)} but the output layer '{layer}' produces "
        f"{format_shape(t.output.shape)}, and {t.loss.describe()} compares them element by element.",
        fix, {"y_shape": list(t.y.shape), "output_shape": list(t.output.shape)}, layer)


def _class_ids_for_labels(t: Target, got: tuple[int, ...], out: tuple[int | None, ...]) -> bool:
    """Whether ``t`` is a multilabel target of one class id a row (``(n,)`` or ``(n, 1)``, whole
    numbers 0..k-1, some 2 or more: no single 0/1 label) against ``k`` sigmoid units."""
    if t.task != "multilabel" or t.loss.kind != "binary" or got not in ((), (1,)) or len(out) != 1:
        return False
    k, y = out[0], t.y
    if not k or k < 3 or y is None or y.dtype.kind not in "biuf" or not y.size or not np.isfinite(y).all():
        return False
    return bool(np.all(y == np.round(y)) and y.min() >= 0 and 2 <= y.max() < k)


def _position_labels_fix(t: Target, got: tuple[int, ...], out: tuple[int | None, ...], want: str) -> str:
    """How to make labels with positions fit an output that predicts per position (``out``: the
    output's shape without its batch axis, ``want``: the labels' shape to give)."""
    assert t.output is not None
    positions, units = out[:-1], out[-1]
    ids = _fits(got, positions) or _fits(got, (*positions, 1))
    if ids and t.loss.kind in ("categorical", "categorical_hinge", "kl"):
        return (f"{t.name} holds one class id per position, but {t.loss.describe()} expects a one-hot row of {units} per "
                f"position: use SparseCategoricalCrossentropy(from_logits={t.loss.from_logits}) for class-id masks, or one-hot "
                f"encode them, {t.name} = keras.utils.to_categorical({t.name}, {units}) (shape {want}).")
    if len(got) == len(out) and sorted(got) == sorted(d or 0 for d in out) and got[0] == out[-1]:
        return (f"{t.name} looks channels-first ({format_shape(got)} against the output's {format_shape(out)}): "
                f"move its channel axis last, {t.name} = np.moveaxis({t.name}, 1, -1).")
    if t.loss.kind == "sparse":  # class ids: one per position, not the output's k per position
        want = f"(n, {', '.join('?' if d is None else str(d) for d in positions)})"
    return (f"The model predicts at {format_shape(positions)} positions but {t.name} holds {format_shape(got[:len(positions)])}: "
            f"resize the masks to the output's size with nearest-neighbour interpolation (tf.image.resize({t.name}, size, "
            f"method='nearest'), which keeps them whole class ids), crop or pad them alike, or change the model so that "
            f"its output has the masks' size. Give {t.name} the shape {want}.")


def _one_hot_rows(y: np.ndarray) -> bool:
    """Whether every row of ``y`` is 0 but for a single 1."""
    flat = y.reshape(len(y), -1)
    return bool(flat.size) and bool(np.isin(flat, (0, 1)).all()) and bool((flat.sum(axis=1) == 1).all())


def _label_fits(kind: str, got: tuple[int, ...], out: tuple[int | None, ...]) -> bool:
    """Whether labels of per-sample shape ``got`` fit an output of per-sample shape ``out``."""
    if not out:
        return got in ((), (1,))
    if kind == "sparse":
        label = out[:-1]
        return _fits(got, label) or _fits(got, (*label, 1)) or _fits(got, out)  # one-hot: label-format
    if kind in ("categorical", "categorical_hinge", "kl") and (out[-1] or 0) > 1 and got in ((), (1,)):
        return True  # integer labels with a one-hot loss: reported as label-format
    return _fits(got, out) or (out[-1] == 1 and _fits(got, out[:-1])) or _fits(got, (*out, 1))


#: Layers whose positions go with ``return_sequences=False``.
_RECURRENT_LAYERS = frozenset({"LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D"})


def _unflattened_issue(t: Target, xs: Sequence[np.ndarray], position_layers: Sequence[str] = ()) -> Issue | None:
    """Samples with several feature dimensions that reach the output layer unreduced.

    A Dense layer acts on the last axis only, so the output keeps the samples' other axes (one
    prediction per position). When the labels fit the output without those axes, the labels are
    right and the model lacks a Flatten (or, after conv or recurrent layers, the step that makes
    each sample one vector): advising to reshape the labels would be wrong.
    """
    assert t.y is not None and t.output is not None and t.output.shape is not None and t.loss.kind is not None
    out = t.output.shape[1:]
    wide = [a for a in xs if a.ndim > 2]
    if len(out) < 2 or not wide or not _label_fits(t.loss.kind, t.y.shape[1:], out[-1:]):
        return None
    sample = format_shape(wide[0].shape[1:])
    evidence = {"x_sample_shape": list(wide[0].shape[1:]), "y_shape": list(t.y.shape), "output_shape": list(t.output.shape)}
    per_position = (f"the output layer '{t.output.layer}' produces {format_shape(t.output.shape)}, a prediction for every position, "
                    f"while {t.name} (shape {format_shape(t.y.shape)}) has one per sample.")
    if position_layers:  # a conv or recurrent model: a Flatten first would be wrong advice
        last = position_layers[-1]
        reduce = ("pass return_sequences=False to it" if last.split(" ")[0] in _RECURRENT_LAYERS else
                  "add a GlobalAveragePooling or Flatten layer after it ({type: flatten} in a recipe)")
        return Issue(
            f"Each sample of x has shape {sample}, and the output of {last} keeps its positions up to the "
            f"output layer: {per_position}",
            f"Make each sample one vector after {last}: {reduce}. The labels' shape is right as it is.",
            evidence, t.output.layer)
    return Issue(
        f"Each sample of x has shape {sample}, more than one feature dimension, and no Flatten comes "
        f"before the Dense layers: a Dense layer acts on the last axis only, so {per_position}",
        "Flatten each sample before the first Dense layer: add {type: flatten} as the first of "
        "model.layers in a recipe (after the conv2d/maxpool2d layers, if any), or "
        "keras.layers.Flatten() in code. The labels' shape is right as it is.",
        evidence, t.output.layer)


def input_structure_issue(x: Any, names: Sequence[str], label: str = "x") -> Issue | None:
    """How ``x`` fails to give each of the model's inputs (named ``names``) one array, or ``None``.

    A dict must hold every input's name; a list or tuple one array per input. Keras names the
    missing input only from inside the traced step, in a multi-line error.
    """
    if len(names) < 1:
        return None
    if isinstance(x, Mapping):
        missing = [n for n in names if n not in x]
        if not missing:
            return None
        extra = [str(k) for k in x if k not in names]
        match = closest_match(missing[0], extra)
        hint = f" ({label} has {', '.join(map(repr, extra))} instead{f': is {match!r} meant to be {missing[0]!r}?' if match else ''})" if extra else ""
        return Issue(f"The model's inputs are named {', '.join(map(repr, names))}, but {label} has no {missing[0]!r}{hint}.",
                     f"Key {label} by the model's input names: {{{', '.join(f'{n!r}: ...' for n in names)}}}.",
                     {"inputs": list(names), "keys": [str(k) for k in x]})
    if len(names) > 1 and not isinstance(x, list | tuple):
        return Issue(f"The model has {len(names)} inputs ({', '.join(map(repr, names))}) but {label} is one array.",
                     "Pass one array per input, as a list in the inputs' order or a dict keyed by their names.", {"inputs": list(names)})
    if len(names) > 1 and len(x) != len(names):
        return Issue(f"The model has {len(names)} inputs ({', '.join(map(repr, names))}) but {label} holds {len(x)} array{'s' if len(x) != 1 else ''}.",
                     "Pass one array per input, in the inputs' order, or a dict keyed by their names.", {"inputs": list(names), "arrays": len(x)})
    return None


#: The channel counts of images and signals (gray, RGB, RGBA; mono or 3-axis sensors) that a
#: channels-first sample puts on its first axis.
_CHANNEL_COUNTS = frozenset({1, 3, 4})
#: The length each other axis of such a sample has at least: an image's rows and columns (8x8
#: digits up), a signal's steps (a real channels-last (4, 4, 512) feature map is not an image).
_LONG_AXIS = {1: 16, 2: 8}


def _layout_window(layer: Any) -> tuple[int, int] | None:
    """``(spatial rank, window along the first spatial axis)`` of a channels-last 1-D or 2-D
    convolution or pooling layer, ``None`` for any other layer."""
    if layer is None or getattr(layer, "data_format", None) != "channels_last":
        return None
    name = type(layer).__name__
    rank = 1 if name.endswith("1D") else 2 if name.endswith("2D") else None
    window = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    if rank is None or not isinstance(window, Sequence) or not window:
        return None  # a global pooling, a Resizing or a Flatten: no window
    return rank, int(window[0])


def channels_first_input(ctx: DataContext) -> Issue | None:
    """Samples laid out channels-first, ``(3, 32, 32)``, read by a channels-last Conv or pooling layer.

    The shapes fit, so nothing fails: the layer reads 3 rows of 32 columns with 32 channels each,
    and slides its window along the 3 rows. A window of 1 row along that
    axis (``Conv2D(8, (1, 3))``) reads such rows on purpose and is not reported.
    """
    for i, (x, layer) in enumerate(zip(ctx.xs, ctx.layout_readers, strict=False)):
        found = _layout_window(layer)
        if found is None or not isinstance(x, np.ndarray):
            continue
        rank, window = found
        declared = ctx.input_shapes[i] if ctx.input_shapes and i < len(ctx.input_shapes) else None
        if declared is not None and len(declared) > 1 and declared[1] is None:
            continue  # keras.Input((None, 64)): sequences of any length, a first batch's 3 steps are steps
        sample = tuple(int(d) for d in x.shape[1:])
        if (len(sample) != rank + 1 or window < 2 or sample[0] not in _CHANNEL_COUNTS
                or min(sample[1:]) < _LONG_AXIS[rank]):
            continue
        name = input_label("x", i, len(ctx.xs), ctx.input_keys)
        channels, spatial = sample[0], sample[1:]
        last = (*spatial, channels)
        axes = "(0, 2, 3, 1)" if rank == 2 else "(0, 2, 1)"
        held = f"{spatial[0]} rows of {spatial[1]} columns" if rank == 2 else f"{spatial[0]} steps"
        read = (f"{channels} row{'s' if channels != 1 else ''} of {spatial[0]} columns with {spatial[1]} channels each"
                if rank == 2 else f"{channels} step{'s' if channels != 1 else ''} of {spatial[0]} channels")
        return Issue(
            f"{name}{ctx.where} has samples of shape {format_shape(sample)}, and {type(layer).__name__} '{layer.name}', the "
            f"first layer that reads their layout, has data_format='channels_last': it reads them as {read}. "
            f"Samples stored channels-first ({channels} channel{'s' if channels != 1 else ''} of {held}, as PyTorch and many "
            f"{'image ' if rank == 2 else ''}loaders keep them) fit that shape, so nothing fails, but the window slides over the wrong axes and "
            f"the model learns far worse.",
            f"Move the channels last: x = np.transpose(x, {axes}) (x_val too) with keras.Input({format_shape(last)}); "
            f"or keep the data and pass data_format='channels_first' to every {rank}-D convolution and pooling layer "
            f"(keras.config.set_image_data_format('channels_first') before building the model does it for all). If "
            f"{format_shape(sample)} is the layout you mean, allow: [channels-first-input].",
            {"input": name, "sample_shape": list(sample), "layer": layer.name}, layer.name)
    return None
