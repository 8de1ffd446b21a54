"""The :class:`~trainkit.diagnosis.engine.Context` a run's diagnosis reads, built when ``fit``
starts: the task and loss, the chance levels of the training and validation targets, the
optimizer's rate, clipping and epsilon, the early stopping, what the model's layers are
(:mod:`trainkit.diagnosis.model_facts`), and a resumed run's context carried over; and, at the
end, what early stopping and a NaN stop did.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from trainkit.callbacks.base import Callback
from trainkit.checks.data_sampling import draws_rows, repeats, shuffles
from trainkit.diagnosis.baseline import (
    Baseline,
    TargetScale,
    chance_loss,
    linear_fit,
    soft_target_levels,
    summed_over_batch,
    target_scale,
    zero_prediction_loss,
)
from trainkit.diagnosis.engine import Context
from trainkit.diagnosis.masked_positions import at_positions, loss_positions
from trainkit.diagnosis.model_facts import (
    attention_score_layers,
    batch_norm_momenta,
    bounded_output,
    dropped_activations,
    float16_layers,
    frozen_layers,
    frozen_output_layers,
    layer_initializers,
    layer_inputs,
    layer_names,
    layer_regularizers,
    layers_with,
    narrowest_width,
    opaque_layers,
    output_layer_names,
    real_number,
    softmax_layers,
    strongest_dropout,
    training_only_layers,
    weight_penalties,
)
from trainkit.stat_names import NEGATIVE_SLOPED, SMOOTH_RELU

#: A validation chance level at most this share of the training one is a constant's exact fit (one
#: class), not a level: the training level stands in for it.
_ONE_CLASS_SHARE = 1e-4

#: Batches of a tf.data source sampled for the chance level.
_TARGET_BATCHES = 16


def first_batch_rows(source: Any) -> int | None:
    """Rows of a ``tf.data`` source's first batch (its batch size, in practice; kept by the
    source, so not read again), or ``None`` when unknown."""
    if not hasattr(source, "sample"):
        return None
    batches = source.sample(1)
    if not batches or not isinstance(batches[0], tuple | list) or len(batches[0]) < 2:
        return None
    # A model with several outputs has a structure of targets: its rows are any one array's (the
    # tuple's own shape read 2 rows for two (32, 1) targets, and failed on (32, 1) beside (32,)).
    targets = batches[0][1]
    while isinstance(targets, Mapping | tuple | list) and len(targets):
        targets = next(iter(targets.values())) if isinstance(targets, Mapping) else targets[0]
    rows = np.shape(targets)
    return int(rows[0]) if len(rows) else None


def one_pass_epochs(source: Any) -> bool | None:
    """Whether an epoch of a training source reads each row once at most: in-memory rows do, and a
    dataset whose pipeline holds no ``.repeat()`` (one that repeats, read ``steps_per_epoch``
    batches an epoch, may read its rows many times over); ``None`` when unknown, as for a dataset
    of unknown or endless length read ``steps_per_epoch`` batches an epoch."""
    dataset = getattr(source, "dataset", None)
    if dataset is None:
        return True if hasattr(source, "rows") else None
    found = repeats(dataset)
    if found is None or found:
        return None if found is None else False
    if getattr(source, "steps", None) is not None and int(dataset.cardinality()) < 0:
        # A generator that loops over its rows (from_generator of a `while True:` over 128 rows
        # of random labels, 80 steps an epoch) holds no .repeat(): its first epoch memorised them
        # (46% of chance) and was told "the labels can be learned".
        return None
    return True


def batches_in_order(source: Any, shuffle: Any, pydataset: bool = False) -> bool | None:
    """Whether a training source's batches come in the data's own order every epoch: in-memory
    rows (or a ``pydataset``'s batches) with ``shuffle`` off, a dataset whose pipeline holds no
    shuffle (``timeseries_dataset_from_array``'s default); ``None`` when unknown."""
    dataset = getattr(source, "dataset", None)
    if dataset is None or pydataset:
        return not shuffle if dataset is not None or hasattr(source, "rows") else None
    found = shuffles(dataset)
    return None if found is None else not found


def source_targets_and_weights(source: Any) -> tuple[Any, Any]:
    """The training targets and row weights of a trainer's data source, for the chance level.

    In-memory data gives its target tensor and its weights (``sample_weight`` times
    ``class_weight``: fit folds both into the rows); a ``tf.data`` source gives those of its
    first few batches (datasets are re-iterable, so this does not consume the training data).
    For a model with several outputs, the targets are the same structure (tuple, list or dict)
    of arrays. Each is ``None`` when unknown; the weights are also ``None`` for unweighted rows,
    and for weights that are not one array (per-output weights: the chance level then comes
    out unknown rather than unweighted, see :func:`_chance_level`).
    """
    data = getattr(source, "data", None)
    if isinstance(data, tuple | list) and len(data) > 1:
        weights = _map_targets(np.asarray, data[2]) if len(data) > 2 and data[2] is not None else None
        return _map_targets(np.asarray, data[1]), weights
    if not hasattr(source, "sample"):
        return None, None
    return _batch_targets(source.sample(_TARGET_BATCHES))  # kept batches: the pipeline is not read again


def _batch_targets(batches: Sequence[Any]) -> tuple[Any, Any]:
    """The targets and weights of ``(x, y)`` or ``(x, y, w)`` batches, each joined along the rows
    (``None`` when unknown, or for unweighted rows)."""
    parts, weights = [], []
    try:
        for batch in batches:
            if not isinstance(batch, tuple | list) or len(batch) < 2:
                return None, None
            parts.append(_map_targets(np.asarray, batch[1]))
            if len(batch) > 2 and batch[2] is not None:
                weights.append(_map_targets(np.asarray, batch[2]))
    except (TypeError, ValueError):
        return None, None
    if not parts:
        return None, None
    return _concatenate(parts), (_concatenate(weights) if weights else None)


@dataclasses.dataclass(frozen=True)
class RowsReadOn:
    """A never-shuffled dataset's targets and weights over its first batches and the rows read
    past them (see :func:`source_targets_read_on`), for the levels read from the targets.

    Attributes:
        targets: The targets, in order, as :func:`source_targets_and_weights` gives them.
        sample_weight: Their rows' weights, ``None`` for unweighted rows.
        rows: How many rows they are when not all of the dataset's (``None``: all of them).
    """

    targets: Any
    sample_weight: Any
    rows: int | None

    def note(self) -> str:
        """What the levels were computed on, for their detail: ``""`` for all the rows."""
        return "" if self.rows is None else f", on the first {self.rows:,} rows: the dataset never shuffles, and was read no further"


def source_targets_read_on(source: Any) -> RowsReadOn | None:
    """The targets (and weights) of a training dataset that never shuffles: its first batches and
    the rows past them that the data checks' shared read holds (:class:`~trainkit.checks.data_sampling.FurtherRows`),
    read now, to that read's budget, when no check asked for them; ``None`` for any other source.

    Its first batches are its first rows, not a sample of them: a rising series' windows in time
    order read a chance level of 35.4 there against the series' variance of ~1,200, and rows sorted
    by label held one class or two (a level of 0.11 for 4 classes alike).
    """
    reader_of = getattr(source, "shared_further_rows", None)
    if reader_of is None or shuffles(source.dataset) is not False:
        return None
    kept = source.sample(_TARGET_BATCHES)
    if not kept:
        return None
    # Made here only when the data checks made none (check_data=False): past the kept batches. None
    # when those are every batch: reading past them found nothing, but started a pass of the
    # pipeline (a generator run again, a shuffle buffer refilled).
    sampled_all = bool(getattr(source, "sampled_all", False))
    reader = None if sampled_all else reader_of(len(kept), kept[0][0])
    more = reader.labels() if reader is not None else None
    if more is not None:
        # The read starts after the batches the data checks sampled (8 of the 16 kept): the kept
        # ones past those are in it already.
        first, weights = _batch_targets(kept[:reader.skip_batches])
        more_weights = reader.weights()
        if first is not None and (weights is None) == (more_weights is None):
            try:
                targets = _concatenate([first, _map_targets(np.asarray, more)])
                weights = None if weights is None else np.concatenate([weights, more_weights])
            except (TypeError, ValueError, KeyError):  # rows past the first batches of other shapes: those alone
                pass
            else:
                return RowsReadOn(targets, weights, None if reader.ended else _target_rows(targets))
    targets, weights = _batch_targets(kept)
    if targets is None:
        return None
    batches = int(source.dataset.cardinality())
    return RowsReadOn(targets, weights, None if sampled_all or 0 <= batches <= len(kept) else _target_rows(targets))


def source_inputs(source: Any) -> Any:
    """The training inputs of a trainer's data source, for a regression's linear-fit level (see
    :func:`build_context`): in-memory data's inputs, or those of a ``tf.data`` source's first few
    batches, the ones :func:`source_targets_and_weights` reads (kept, not read again); ``None``
    when unknown."""
    data = getattr(source, "data", None)
    if isinstance(data, tuple | list) and data:
        return data[0]
    if not hasattr(source, "sample"):
        return None
    try:
        parts = [_map_targets(np.asarray, batch[0]) for batch in source.sample(_TARGET_BATCHES)
                 if isinstance(batch, tuple | list) and len(batch) >= 2]
        return _concatenate(parts) if parts else None
    except (TypeError, ValueError):  # batches whose inputs do not join (ragged, text): no level
        return None


def sample_stands_for_rows(source: Any, pydataset: bool = False) -> bool | int:
    """Whether a ``tf.data`` source's first batches (:func:`source_inputs`' rows) stand for all its
    rows: ``True`` where they are every row; their rows (a number) where its pipeline shuffles them
    in a buffer that holds them all, which makes them a random draw of them
    (:func:`~trainkit.checks.data_sampling.draws_rows`); ``False`` otherwise.

    Not those of a pipeline that never shuffles, nor a ``pydataset``'s (``shuffle=True`` reorders
    its batches, and the first ones read are its first rows): its first rows are no sample of the
    rest (a series in time order, rows sorted by target), and a linear fit of them says nothing
    about a whole epoch's loss.
    """
    if not hasattr(source, "sample"):
        return False
    if getattr(source, "sampled_all", False):
        return True
    if pydataset or draws_rows(source.dataset) is not True:
        return False
    return _target_rows(_batch_targets(source.sample(_TARGET_BATCHES))[0]) or False  # kept batches: none read again


@dataclasses.dataclass(frozen=True)
class HeldRows:
    """A validation dataset's first batches, as the data checks read and kept them (see
    :func:`held_rows`), for the linear fit's loss on validation rows.

    Attributes:
        batches: The batches, in order (joined only when read: :meth:`joined`).
        every_row: Whether they are every row of the dataset.
    """

    batches: Sequence[Any]
    every_row: bool

    def joined(self) -> tuple[Any, Any, Any, int | None] | None:
        """Their inputs, targets and row weights (``None``: unweighted), each joined along the rows,
        and how many rows they are when not all of the dataset's (``None``: all of them); ``None``
        when they do not join. Joined only here: image batches are never read by a fit of 256
        values a row at most, and were copied for nothing."""
        targets, weights = _batch_targets(self.batches)
        if targets is None:
            return None
        try:
            inputs = _concatenate([_map_targets(np.asarray, batch[0]) for batch in self.batches])
        except (TypeError, ValueError, KeyError):  # batches whose inputs do not join (ragged, text)
            return None
        return inputs, targets, weights, None if self.every_row else _target_rows(targets)


def held_rows(source: Any) -> HeldRows | None:
    """The first batches a validation dataset source already holds (the data checks' sample,
    :meth:`~trainkit.sources.DatasetSource.held`), read from no pipeline, where they stand for its
    rows: all of them, or a random draw (its pipeline shuffles). ``None`` when it holds none
    (``check_data=False``), and for a never-shuffled dataset's first rows (as
    :func:`sample_stands_for_rows` for a training dataset): validation rows in time order whose
    noise grows were 0.10 for the fit on the first 512 of 2,000 against 0.76 on all of them, and a
    healthy model (0.80) was told it ended 7.9x worse than linear."""
    held = source.held() if hasattr(source, "held") else []
    every_row = bool(getattr(source, "sampled_all", False))
    if not held or not (every_row or draws_rows(getattr(source, "dataset", None)) is True):
        return None
    return HeldRows(held, every_row)


def _concatenate(parts: list[Any]) -> Any:
    """Batches of arrays (or of tuples, lists or dicts of arrays) joined along the rows."""
    first = parts[0]
    if isinstance(first, Mapping):
        return {k: np.concatenate([p[k] for p in parts]) for k in first}
    if isinstance(first, tuple | list):
        return type(first)(np.concatenate([p[i] for p in parts]) for i in range(len(first)))
    return np.concatenate(parts)


def _target_rows(targets: Any) -> int | None:
    """Rows of in-memory targets (one array, or a tuple, list or dict of them, ``None`` for an
    output without targets), ``None`` when there are none."""
    values = list(targets.values()) if isinstance(targets, Mapping) else list(targets) if isinstance(targets, tuple | list) else [targets]
    shapes = [np.shape(v) for v in values if v is not None]
    return int(shapes[0][0]) if shapes and shapes[0] else None


def _map_targets(fn: Any, targets: Any) -> Any:
    """``fn`` applied to one target array, or to each of a tuple, list or dict of them."""
    if isinstance(targets, Mapping):
        return {k: fn(v) for k, v in targets.items()}
    if isinstance(targets, tuple | list):
        return type(targets)(fn(v) for v in targets)
    return fn(targets)


def _chance_level(trainer: Any, targets: Any, sample_weight: Any = None, batch_size: int | None = None,
                  prior_rows: Any = None, levels: Mapping[str, Baseline | None] | None = None, in_order: bool = False,
                  last_batch: int = 0) -> Baseline | None:
    """The chance level of the trainer's loss: for several outputs the weighted sum of theirs.

    ``sample_weight`` (one array: compute_loss gives it to every output) weighs the rows the way
    training does; weights in a structure (per output) give no chance level, not an unweighted one.
    ``batch_size`` gives a one-output model's :attr:`Baseline.first_steps`; ``prior_rows`` (the
    training targets, for a validation level) are pooled into a one-output model's label prior
    where its rows are few for their classes (see :func:`~trainkit.diagnosis.baseline.chance_loss`).
    ``levels``: the outputs' own, when :func:`_output_levels` gave them already (not computed twice).
    ``in_order``: the training batches are ``targets``' rows in their own order.
    ``last_batch``: the rows of an epoch's short last batch (0: none or unknown), for :attr:`Baseline.worst_batch`.
    """
    if isinstance(sample_weight, tuple | list | Mapping):
        return None
    heads = getattr(trainer, "heads", None)
    targets = _one_output_targets(trainer, targets)
    if not heads or len(heads) == 1 or not isinstance(targets, tuple | list | Mapping):
        return chance_loss(trainer.task, trainer.loss, targets, sample_weight, batch_size, units=_output_units(trainer.model),
                           prior_rows=_one_output_targets(trainer, prior_rows), in_order=in_order, last_batch=last_batch)
    levels = _output_levels(trainer, targets, sample_weight) if levels is None else levels
    if levels is None or any(level is None for level in levels.values()):
        return None
    by_name = {h.name: h for h in heads}
    total = sum(by_name[name].weight * level.loss for name, level in levels.items() if level is not None)
    details = "; ".join(f"{name}: {level.detail}" for name, level in levels.items() if level is not None)
    return Baseline(total, "sum over the outputs (" + details + ")")


def _output_levels(trainer: Any, targets: Any, sample_weight: Any = None, prior_rows: Any = None) -> dict[str, Baseline | None] | None:
    """Each trained output's own chance level (``None`` where unknown), by output name, for a
    model with several outputs; ``None`` for one output, or targets or weights that do not pair
    with the outputs (see :func:`_chance_level`). ``prior_rows`` (the training targets, for the
    validation levels) are pooled into each output's label prior as a one-output model's are."""
    heads = getattr(trainer, "heads", None)
    if not heads or len(heads) == 1 or isinstance(sample_weight, tuple | list | Mapping):
        return None
    per_output = _per_output(heads, targets)
    if per_output is None:
        return None
    # A softmax head's validation rows few for its classes: its own prior is fitted to their noise
    # (200 classes, 800 rows: 3.99 for their own, 4.11 pooled, as one output's reads).
    priors = _per_output(heads, prior_rows) or [None] * len(heads)
    return {head.name: chance_loss(head.task, head.loss, y, sample_weight, prior_rows=prior) if y is not None else None
            for head, y, prior in zip(heads, per_output, priors, strict=True) if head.loss is not None}


def _per_output(heads: Sequence[Any], targets: Any) -> list[Any] | None:
    """``targets`` (a list by position or a dict by name) as one entry per head, ``None`` when they do not pair."""
    if not isinstance(targets, tuple | list | Mapping):
        return None
    per_output = [targets.get(h.name) for h in heads] if isinstance(targets, Mapping) else list(targets)
    return per_output if len(per_output) == len(heads) else None


def _known_levels(levels: Mapping[str, Baseline | None] | None) -> dict[str, float] | None:
    """The known ones of :func:`_output_levels`' chance levels, as numbers; ``None`` when none is
    (see :attr:`~trainkit.diagnosis.engine.Context.output_chance_losses`)."""
    known = {name: level.loss for name, level in (levels or {}).items() if level is not None}
    return known or None


def _regression_start(trainer: Any, targets: Any, sample_weight: Any = None) -> float | None:
    """The regression outputs' share of a fresh model's first loss, for a model with several
    outputs (see :attr:`~trainkit.diagnosis.engine.Context.regression_start_loss`): the weighted
    sum of their losses of predicting 0; ``None`` for one output or when one is unknown."""
    heads = getattr(trainer, "heads", None)
    if not heads or len(heads) == 1 or not isinstance(targets, tuple | list | Mapping) or isinstance(sample_weight, tuple | list | Mapping):
        return None
    per_output = [targets.get(h.name) for h in heads] if isinstance(targets, Mapping) else list(targets)
    if len(per_output) != len(heads):
        return None
    total = 0.0
    for head, y in zip(heads, per_output, strict=True):
        if head.loss is None or head.task != "regression":
            continue
        value = zero_prediction_loss(head.loss, y, sample_weight) if y is not None else None
        if value is None:
            return None
        total += head.weight * value
    return total


def _output_units(model: Any) -> int | None:
    """The last axis of a one-output model's output (a softmax's units), ``None`` when unknown."""
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):  # a subclassed model has no symbolic outputs
        return None
    if not outputs or len(outputs) != 1 or not outputs[0].shape:
        return None
    units = outputs[0].shape[-1]
    return int(units) if units else None


def _masked_targets(trainer: Any, inputs: Any, targets: Any, sample_weight: Any, rows: int | None) -> tuple[Any, Any, int | None]:
    """The targets (and weights) of the positions the loss reads, for a chance level.

    A model whose output carries an ``Embedding(mask_zero=True)``'s mask is averaged over its
    unmasked positions only (see :mod:`~trainkit.diagnosis.masked_positions`): its targets become
    those positions', one a row, and ``rows`` a batch's count of them. Targets whose positions
    cannot be told come back ``None`` (no chance level); others as they are.
    """
    known, positions = loss_positions(trainer.model, inputs)
    if not known:
        return None, None, rows
    if positions is None:
        return targets, sample_weight, rows
    kept = at_positions(_one_output_targets(trainer, targets), sample_weight, positions)
    if kept is None or not len(kept[0]):
        return None, None, rows
    per_row = len(kept[0]) / len(positions)
    return kept[0], kept[1], None if rows is None else max(1, round(rows * per_row))


def _one_output_targets(trainer: Any, targets: Any) -> Any:
    """A one-output model's targets given by its key (``{"out": y}`` for a model returning
    ``{"out": ...}``, as ``model.fit`` takes them) as the array itself; anything else as it is."""
    if isinstance(targets, Mapping) and len(targets) == 1 and len(getattr(trainer, "heads", ())) == 1:
        return next(iter(targets.values()))
    return targets


def _summed_loss(trainer: Any, targets: Any) -> bool:
    """Whether an output's loss sums over each batch's rows (see
    :func:`~trainkit.diagnosis.baseline.summed_over_batch`); a loss of the user's own is scored on
    the targets of a one-output model only (a subclassed model's, whose outputs are unknown, at
    its targets' shape)."""
    heads = [h for h in getattr(trainer, "heads", ()) if h.loss is not None]
    outputs = getattr(trainer.model, "outputs", None) or []
    if len(heads) == 1 and len(outputs) <= 1 and targets is not None:
        # A subclassed model has no outputs before its first call: its summed loss went unprobed,
        # and 40 validation rows against 160 training rows still got the note.
        shape = tuple(outputs[0].shape) if outputs else None
        return summed_over_batch(heads[0].loss, _one_output_targets(trainer, targets), shape)
    return any(summed_over_batch(h.loss, None) for h in heads)


def _compute_loss_of_its_own(trainer: Any) -> bool:
    """Whether ``trainer``'s class overrides :meth:`~trainkit.trainer.Trainer.compute_loss`."""
    from trainkit.trainer import Trainer  # here: the trainer imports the diagnosis

    return isinstance(trainer, Trainer) and type(trainer).compute_loss is not Trainer.compute_loss


def _loss_text(trainer: Any, describe_loss: Any) -> str:
    heads = getattr(trainer, "heads", ())
    if len(heads) > 1:
        return ", ".join(f"{h.name}: {describe_loss(h.loss).describe()}" for h in heads if h.loss is not None)
    return describe_loss(heads[0].loss if heads else trainer.loss).describe()


def _trained_output_names(trainer: Any) -> tuple[str, ...]:
    """The names of a model's outputs with a loss when it has several, ``()`` for one."""
    heads = getattr(trainer, "heads", ())
    return tuple(h.name for h in heads if h.loss is not None) if len(heads) > 1 else ()


def _untrained_outputs(trainer: Any, output_layers: tuple[str, ...]) -> tuple[str, ...]:
    """The layers of ``output_layers`` (the model's outputs, in order) whose output has no loss."""
    heads = getattr(trainer, "heads", ())
    if len(heads) != len(output_layers):
        return ()
    return tuple(layer for layer, head in zip(output_layers, heads, strict=True) if head.loss is None)


def _one_task(trainer: Any) -> str:
    """The trainer's task, ``mixed`` when its outputs have different ones."""
    tasks = {h.task for h in getattr(trainer, "heads", ()) if h.loss is not None}
    return tasks.pop() if len(tasks) == 1 else trainer.task if isinstance(trainer.task, str) else "mixed"


def build_context(
    trainer: Any,
    targets: Any,
    *,
    initial_epoch: int = 0,
    batch_size: int | None = None,
    train_rows: int | None = None,
    one_pass_epochs: bool | None = None,
    batches_in_order: bool | None = None,
    has_validation: bool = False,
    callbacks: Iterable[Callback] = (),
    sample_weight: Any = None,
    validation_targets: Any = None,
    validation_sample_weight: Any = None,
    batch_rows: int | None = None,
    inputs: Any = None,
    validation_inputs: Any = None,
    read_on: RowsReadOn | None = None,
    inputs_stand_for_rows: bool | int = False,
    validation_held: HeldRows | None = None,
) -> Context:
    """The :class:`Context` of a trainer about to fit.

    The chance level comes from ``targets``, weighted by ``sample_weight``; the validation loss's
    from ``validation_targets`` weighted by ``validation_sample_weight``, when they are known.
    Its level over the first steps is read at ``batch_size`` rows a batch, or ``batch_rows`` (a
    dataset's first batch) without one; for a one-output regression with numeric ``inputs``, at
    most that of the inputs' linear fit (see :func:`~trainkit.diagnosis.baseline.linear_fit_level`).
    That fit's loss on the training rows (in-memory ones: ``train_rows`` known) and on the
    validation rows (``validation_inputs`` and ``validation_targets``) is kept too, for the end of
    the run (``worse-than-linear``).

    ``read_on``: a never-shuffled dataset's targets past its first batches too (see
    :func:`source_targets_read_on`): the chance levels, the targets' scale and best constant are
    computed on them, the levels of the first steps (and of a fresh model's start) on ``targets``,
    the first batches, which are the steps the run starts on.

    ``inputs_stand_for_rows``: ``inputs`` and ``targets`` are a dataset's first batches that stand
    for all its rows (see :func:`sample_stands_for_rows`: ``True`` for every row, their rows for a
    random draw of them): the linear fit's loss on them is kept as that on the training rows. ``validation_held``: a validation dataset's first batches, held
    from the data checks (see :func:`held_rows`), for that fit's loss on validation rows. Where
    either is a sample, :attr:`Context.linear_sample_rows` says on how many rows.
    """
    from trainkit.checks.compatibility import describe_loss

    chance_targets, chance_weights, rows = targets, sample_weight, batch_size or batch_rows
    if targets is not None:
        chance_targets, chance_weights, rows = _masked_targets(trainer, inputs, targets, sample_weight, rows)
    # A masked model's positions are read from the inputs, which the rows read on do not keep.
    read_on = read_on if read_on is not None and chance_targets is targets else None
    level_targets, level_weights = (read_on.targets, read_on.sample_weight) if read_on else (chance_targets, chance_weights)
    # A compute_loss of its own measures what it likes (a penalty added, another loss): the
    # chance level of the trainer's loss is no level of it (an MSE override of a binary task's
    # cross-entropy read "initial-loss-too-low ... label leaking" at 0.33 against 0.69).
    own_loss = _compute_loss_of_its_own(trainer)
    # A term a layer adds with add_loss in its call (a VAE's KL) is in the loss at a level of its
    # own: a beta-VAE's KL at 20x read "initial-loss-too-high" (an initialiser blamed), and its
    # collapsed posterior "fix initial-loss-too-high first".
    call_losses = tuple(getattr(trainer, "_call_loss_layers", ()))
    unleveled = own_loss or bool(call_losses)
    # A model with several outputs: each one's own level too, which its <output>_loss compares with
    # (a head on random labels beside one that learns left the total well below its level).
    levels = _output_levels(trainer, level_targets, level_weights) if level_targets is not None and not unleveled else None
    # Batches in the rows' own order: the first steps read the first rows (a dataset's sampled
    # batches are its first ones too), not a random draw of them.
    # In-memory rows end each epoch on a short batch (993 rows in 32s: one of 1 row), which reads
    # its few rows' losses alone (a masked model's rows are positions: not known then).
    last_batch = train_rows % batch_size if train_rows and batch_size and rows == batch_size else 0
    baseline = (_chance_level(trainer, chance_targets, chance_weights, rows, levels=levels, in_order=bool(batches_in_order), last_batch=last_batch)
                if chance_targets is not None and not unleveled else None)
    if read_on is not None and not unleveled:
        # The level over the rows read on; the first steps' and a fresh output's start stay the first batches'.
        first, baseline = baseline, _chance_level(trainer, level_targets, level_weights, levels=levels)
        if baseline is not None:
            baseline = dataclasses.replace(baseline, detail=baseline.detail + read_on.note(), first_steps=first.first_steps if first is not None else None,
                                           worst_batch=first.worst_batch if first is not None else None,
                                           uninformed=first.uninformed if first is not None else baseline.uninformed)
    soft = None
    if baseline is None and level_targets is not None and not unleveled and len(getattr(trainer, "heads", ())) <= 1 \
            and not isinstance(level_weights, tuple | list | Mapping):
        # Cross-entropy on soft targets has no chance level; where its loss starts and ends is
        # still told (chance-level-unknown).
        soft = soft_target_levels(trainer.loss, _one_output_targets(trainer, level_targets), level_weights)
    linear_loss = val_linear_loss = linear_rows = val_linear_rows = None
    if baseline is not None and inputs is not None and _one_task(trainer) == "regression" and len(getattr(trainer, "heads", ())) <= 1:
        # One fit, on a few thousand of the rows, before the first step: the first steps' level
        # and the end's comparison both read it.
        fit = linear_fit(inputs, _one_output_targets(trainer, targets), sample_weight, narrowest=narrowest_width(trainer.model))
        level = fit.first_steps_level(trainer.loss, batch_size or batch_rows) if fit is not None else None
        if level is not None:
            baseline = dataclasses.replace(baseline, first_steps=min(level, math.inf if baseline.first_steps is None else baseline.first_steps))
        if fit is not None and (train_rows is not None or inputs_stand_for_rows):
            # A dataset's first batches stand for its rows only where they are a random draw of
            # them (its pipeline shuffles) or all of them: a series' first windows are not.
            linear_loss = fit.training_loss(trainer.loss)
            if train_rows is None and inputs_stand_for_rows is not True:
                linear_rows = int(inputs_stand_for_rows)
        if fit is not None and validation_inputs is not None and validation_targets is not None:
            val_linear_loss = fit.loss_on(trainer.loss, validation_inputs, _one_output_targets(trainer, validation_targets),
                                          validation_sample_weight)
        elif fit is not None and validation_held is not None and (held := validation_held.joined()) is not None:
            # A validation dataset's first batches, which the data checks read and hold: no pass of
            # its own. Before, a dataset's run was never compared with the fit (an MLP under
            # SGD 1e-4 at 60-97x the fit on arrays got no word on the same rows as datasets).
            val_linear_loss = fit.loss_on(trainer.loss, held[0], _one_output_targets(trainer, held[1]), held[2])
            val_linear_rows = held[3]
    # The validation loss's own levels (see trainkit.diagnosis.baseline): without class_weight,
    # on the validation rows' class mix.
    val_chance = val_levels = None
    if (baseline is not None or levels) and validation_targets is not None:
        val_targets, val_weights, _ = _masked_targets(trainer, validation_inputs, validation_targets, validation_sample_weight, None)
        val_levels = _output_levels(trainer, val_targets, val_weights, level_targets) if val_targets is not None and levels else None
        val_chance = (_chance_level(trainer, val_targets, val_weights, prior_rows=level_targets, levels=val_levels)
                      if val_targets is not None and baseline is not None else None)
        if val_levels:
            # An output whose validation rows are all one class has no level of its own there, as
            # for the total's below: its training level stands in.
            val_levels = {name: None if level is None or (levels or {}).get(name) is None
                          or level.loss <= _ONE_CLASS_SHARE * levels[name].loss else level for name, level in val_levels.items()}
        if val_chance is not None and val_chance.loss <= _ONE_CLASS_SHARE * baseline.loss:
            # Validation rows a constant predicts exactly (one class: iris unsorted, validation_split's
            # last 30 rows all class 2) have no level to compare with, but the clipped cross-entropy
            # makes their ~0 a 2.4e-7 that passed as one: val_loss 0.64 read "268611732% of chance
            # ... e.g. random labels". The training rows' level stands in, as for no level at all.
            val_chance = None
    scale = _target_scale(trainer, read_on.targets if read_on else targets)
    model = trainer.model
    outputs = tuple(output_layer_names(model, traced=getattr(getattr(trainer, "_probe", None), "output_layers", ())))
    inputs = layer_inputs(model)
    dropout = strongest_dropout(model)
    schedule, schedule_rate = _schedule(trainer.optimizer)
    return Context(
        task=_one_task(trainer),
        loss=f"{type(trainer).__name__}.compute_loss" if own_loss else _loss_text(trainer, describe_loss),
        chance_loss=baseline.loss if baseline else None,
        chance_detail=baseline.detail if baseline else "",
        val_chance_loss=val_chance.loss if val_chance else None,
        val_chance_detail=val_chance.detail if val_chance else "",
        uninformed_loss=baseline.uninformed if baseline else None,
        first_steps_loss=baseline.first_steps if baseline else None,
        worst_batch_loss=baseline.worst_batch if baseline else None,
        loss_floor=baseline.floor if baseline else soft.floor if soft else 0.0,
        val_loss_floor=val_chance.floor if val_chance else None,
        soft_target_loss=soft.constant if soft else None,
        summed_loss=_summed_loss(trainer, targets),
        regularization=loss_penalties(trainer) + _activity_penalty(trainer),
        layers=tuple(layer_names(model)),
        output_layers=outputs,
        output_names=_trained_output_names(trainer),
        untrained_outputs=_untrained_outputs(trainer, outputs),
        output_chance_losses=_known_levels(levels),
        val_output_chance_losses=_known_levels(val_levels),
        output_loss_weights={h.name: float(h.weight) for h in trainer.heads if h.loss is not None} if levels else None,
        float16_layers=float16_layers(model),
        softmax_layers=softmax_layers(model, getattr(trainer, "_probe", None)),
        sloped_layers=layers_with(model, getattr(trainer, "_probe", None), NEGATIVE_SLOPED, "sloped_taps"),
        smooth_layers=layers_with(model, getattr(trainer, "_probe", None), SMOOTH_RELU, "smooth_taps"),
        epochs=int(trainer.epochs) if trainer.epochs else None,
        initial_epoch=initial_epoch,
        learning_rate=_learning_rate(trainer.optimizer),
        schedule=schedule,
        schedule_rate=schedule_rate,
        rate_callback=_rate_callback(callbacks),
        rate_plateau=_rate_plateau_config(callbacks),
        optimizer=_optimizer_class(trainer.optimizer),
        clipping=_clipping(trainer.optimizer),
        epsilon=_epsilon(trainer.optimizer),
        beta_2=_beta_2(trainer.optimizer),
        weight_decay=_weight_decay(trainer.optimizer),
        # A dataset's rows a batch are its first batch's: dead-relu judges no batch of 2 rows.
        batch_size=batch_size or batch_rows,
        train_rows=train_rows,
        one_pass_epochs=one_pass_epochs,
        batches_in_order=batches_in_order,
        has_validation=has_validation,
        val_rows=_target_rows(validation_targets),
        early_stopping=_early_stopping_config(callbacks),
        target_mean=scale.mean if scale else None,
        target_std=scale.std if scale else None,
        target_constant=baseline.constant if baseline and scale else None,
        target_columns=int(np.prod(np.shape(targets)[1:], dtype=np.int64)) if scale else None,
        target_axes=_target_axes(model, targets) if scale else None,
        check_codes=getattr(trainer, "data_check_codes", None),
        far_value_checks=tuple(getattr(trainer, "data_check_far", ())),
        dropout=dropout[0],
        dropout_layer=dropout[1],
        dropout_on_inputs=dropout[2],
        training_only_layers=training_only_layers(model),
        batch_norms=batch_norm_momenta(model),
        dropped_activations=dropped_activations(model, inputs),
        # An untrained model's built biases are where the run starts (set by bias.assign, perhaps).
        initializers=layer_initializers(model, read_bias=not getattr(trainer, "_model_trained_before", False)
                                        and not getattr(trainer, "resumed_epochs", 0) and not getattr(trainer, "resumed_batches", 0)),
        frozen_layers=frozen_layers(model),
        frozen_outputs=frozen_output_layers(model, outputs, inputs),
        relative_loss=_relative_loss(trainer),
        keras_loss=not unleveled and _keras_losses(trainer, describe_loss),
        call_loss_layers=call_losses,
        opaque_layers=opaque_layers(model),
        attention_score_layers=attention_score_layers(model),
        regularizers=layer_regularizers(model),
        layer_inputs=inputs,
        # A resumed run's first steps are its own run's, whatever the model held before the restore.
        trained_before=bool(getattr(trainer, "_model_trained_before", False)) and not getattr(trainer, "resumed_epochs", 0)
        and not getattr(trainer, "resumed_batches", 0),
        linear_loss=linear_loss,
        val_linear_loss=val_linear_loss,
        linear_sample_rows=linear_rows,
        val_linear_sample_rows=val_linear_rows if val_linear_loss is not None else None,
        regression_start_loss=_regression_start(trainer, chance_targets, chance_weights) if chance_targets is not None else None,
        bounded_output=bounded_output(model) if _one_task(trainer) == "regression" else None,
        # Set by trainkit.run for a recipe's trainer: its advice names recipe keys.
        recipe=bool(getattr(trainer, "_recipe_run", False)),
    )


def _keras_losses(trainer: Any, describe_loss: Any) -> bool:
    """Whether every output's loss is one Keras knows (a loss of its own reads as kind ``None``)."""
    heads = getattr(trainer, "heads", ())
    losses = [h.loss for h in heads if h.loss is not None] if heads else [trainer.loss]
    return bool(losses) and all(describe_loss(loss).kind is not None for loss in losses)


def _relative_loss(trainer: Any) -> bool:
    """Whether a regression output's loss reads ratios or logarithms of its targets (MAPE, MSLE)."""
    from trainkit.checks.compatibility import MAPE_NAMES, MSLE_NAMES, describe_loss

    heads = getattr(trainer, "heads", ())
    losses = [h.loss for h in heads if h.task in ("regression", None) and h.loss is not None] if heads else [trainer.loss]
    return any(describe_loss(loss).name in MAPE_NAMES | MSLE_NAMES for loss in losses)


def _target_scale(trainer: Any, targets: Any) -> TargetScale | None:
    """The scale of a one-output regression's training targets (``None`` for anything else)."""
    heads = getattr(trainer, "heads", ())
    targets = _one_output_targets(trainer, targets)
    if _one_task(trainer) != "regression" or len(heads) > 1 or targets is None or isinstance(targets, tuple | list | Mapping):
        return None
    return target_scale(targets)


def _target_axes(model: Any, targets: Any) -> tuple[int, ...] | None:
    """The axes a one-output regression's per-channel target mean is taken over, when its output
    predicts per position (see :func:`~trainkit.checks.data_context.position_axes`)."""
    from trainkit.checks.data_context import position_axes

    outputs = getattr(model, "outputs", None) or []
    if len(outputs) != 1 or isinstance(targets, tuple | list | Mapping):
        return None
    return position_axes(np.ndim(targets), tuple(outputs[0].shape))


def resumed_context(saved: Context, current: Context) -> Context:
    """The context of a resumed fit: ``current``, with what describes the run's start from ``saved``.

    The first epoch (how many epochs the run plans), the penalty in the first losses, the
    learning rate at the start, the chance level, the linear fit's losses, the weights' start (a bias set by
    ``bias.assign`` reads as its initializer's zeros in the restored model) and whether the model was trained before the
    run began are the whole run's; the rest (epochs asked for, callbacks, validation) is this fit's.
    """
    # trained_before too: the resumed fit's own is False (its model holds the run's weights), and a
    # resume of a run on a model trained before judged that run's first losses as a fresh model's.
    return dataclasses.replace(current, initial_epoch=saved.initial_epoch, regularization=saved.regularization,
                               trained_before=saved.trained_before,
                               initializers=saved.initializers if saved.initializers is not None else current.initializers,
                               learning_rate=saved.learning_rate, chance_loss=saved.chance_loss,
                               chance_detail=saved.chance_detail, val_chance_loss=saved.val_chance_loss,
                               val_chance_detail=saved.val_chance_detail, uninformed_loss=saved.uninformed_loss,
                               first_steps_loss=saved.first_steps_loss,
                               worst_batch_loss=saved.worst_batch_loss, loss_floor=saved.loss_floor, val_loss_floor=saved.val_loss_floor,
                               soft_target_loss=saved.soft_target_loss,
                               linear_loss=saved.linear_loss, linear_sample_rows=saved.linear_sample_rows,
                               val_linear_loss=saved.val_linear_loss, val_linear_sample_rows=saved.val_linear_sample_rows, output_chance_losses=saved.output_chance_losses,
                               val_output_chance_losses=saved.val_output_chance_losses)


def loss_penalties(trainer: Any) -> float:
    """The weight penalties in the trainer's training loss now: 0.0 for a compute_loss of its own
    that never calls the default one, which adds them (``model.losses``).

    Taken out of such a loss, which did not hold them (L2 penalties of 0.5 beside a
    cross-entropy of 0.4), they made its loss on the data negative: "initial-loss-too-low" at
    -0.12 and a collapsed loss of -0.38 after one epoch.
    """
    return weight_penalties(trainer.model) if getattr(trainer, "_loss_holds_penalties", True) else 0.0


def _activity_penalty(trainer: Any) -> float:
    """The model's activity penalties on the probe batch now (:mod:`trainkit.activity_penalty`),
    which ``model.losses`` holds only as tensors of a traced step; 0.0 without any."""
    measurer = getattr(trainer, "_activity_penalty", None)
    return measurer.measure() if measurer is not None else 0.0


def _optimizer_class(optimizer: Any) -> str:
    """The optimizer's class name; a ``LossScaleOptimizer``'s inner one's, which sets the steps
    (the advice named ``{name: lossscaleoptimizer, ...}``, a name no recipe takes, and judged
    Adam's rates as plain SGD's)."""
    return type(getattr(optimizer, "inner_optimizer", optimizer)).__name__


def _clipping(optimizer: Any) -> dict[str, float] | None:
    """The optimizer's gradient clipping (Keras takes one of the three), ``None`` without."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    for key in ("clipnorm", "global_clipnorm", "clipvalue"):
        value = getattr(inner, key, None)
        if real_number(value):
            return {key: float(value)}
    return None


#: Optimizers whose step divides by the gradients' running size plus ``epsilon``.
_EPSILON_DIVIDES = ("Adam", "AdamW", "Nadam", "Adamax", "RMSprop", "Adagrad")


def _epsilon(optimizer: Any) -> float | None:
    """The ``epsilon`` of an optimizer that divides its step by the gradients' running size plus it, ``None`` for others."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    value = getattr(inner, "epsilon", None)
    if type(inner).__name__ not in _EPSILON_DIVIDES or not real_number(value):
        return None
    return float(value)


def _beta_2(optimizer: Any) -> float | None:
    """Adam's and AdamW's ``beta_2`` (their epsilon meets the second moment before its bias correction), ``None`` for others."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    value = getattr(inner, "beta_2", None)
    return float(value) if type(inner).__name__ in ("Adam", "AdamW") and real_number(value) else None


def _weight_decay(optimizer: Any) -> float | None:
    """The optimizer's decoupled ``weight_decay`` when above 0, ``None`` without."""
    value = getattr(getattr(optimizer, "inner_optimizer", optimizer), "weight_decay", None)
    return float(value) if real_number(value) and value > 0 else None


def _learning_rate(optimizer: Any) -> float | None:
    """The optimizer's learning rate when it is one number (a variable, which a callback such as
    ``ReduceLROnPlateau`` may still lower); ``None`` for a schedule or a callable.

    A schedule's value when training begins is not the run's rate: a warm-up from 0 read as 0,
    and a run trained with statistics off was told "the learning rate was 0 for the whole run",
    with statistics on to raise the rate to 0.
    """
    import keras

    rate = getattr(getattr(optimizer, "inner_optimizer", optimizer), "_learning_rate", None)
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule) or (callable(rate) and not isinstance(rate, keras.Variable)):
        return None
    try:
        return float(np.asarray(optimizer.learning_rate))
    except (TypeError, ValueError, AttributeError):
        return None


def _schedule(optimizer: Any) -> tuple[str | None, str | None]:
    """The class name of the optimizer's ``LearningRateSchedule`` and the argument of it that sets
    its largest rate (``None`` for a schedule of one's own); ``(None, None)`` without a schedule."""
    import keras

    rate = getattr(getattr(optimizer, "inner_optimizer", optimizer), "_learning_rate", None)
    if not isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        return None, None
    if getattr(rate, "warmup_target", None) is not None:  # CosineDecay's warm-up rises to it
        return type(rate).__name__, "warmup_target"
    for argument in ("initial_learning_rate", "values"):  # the decays'; PiecewiseConstantDecay's
        if hasattr(rate, argument):
            return type(rate).__name__, argument
    return type(rate).__name__, None


def _rate_callback(callbacks: Iterable[Callback]) -> str | None:
    """The class name of a Keras ``LearningRateScheduler`` among ``callbacks`` (run wrapped in a
    KerasCallback), which sets the optimizer's rate at every epoch; ``None`` without one."""
    import keras

    from trainkit.callbacks.keras_callbacks import KerasCallback

    for cb in callbacks:
        inner = cb.callback if isinstance(cb, KerasCallback) else cb
        if isinstance(inner, keras.callbacks.LearningRateScheduler):
            return type(inner).__name__
    return None


def _rate_plateau_config(callbacks: Iterable[Callback]) -> dict[str, Any] | None:
    """The settings of a Keras ``ReduceLROnPlateau`` among ``callbacks`` (run wrapped in a
    KerasCallback), as Python values; ``None`` without one."""
    import keras

    from trainkit.callbacks.keras_callbacks import KerasCallback

    for cb in callbacks:
        inner = cb.callback if isinstance(cb, KerasCallback) else cb
        if isinstance(inner, keras.callbacks.ReduceLROnPlateau):
            # Python numbers: json.dumps refuses numpy's, which a user may have passed.
            return {"monitor": str(inner.monitor), "patience": int(inner.patience), "min_delta": float(inner.min_delta),
                    "cooldown": int(inner.cooldown), "factor": float(inner.factor), "min_lr": float(inner.min_lr)}
    return None


def _early_stoppers(callbacks: Iterable[Callback]) -> Iterator[Any]:
    """trainkit's EarlyStopping callbacks, and Keras's that ``fit`` runs wrapped in a KerasCallback
    (the diagnosis told a run that Keras's had stopped, and restored, to add early stopping)."""
    import keras

    from trainkit.callbacks.early_stopping import EarlyStopping
    from trainkit.callbacks.keras_callbacks import KerasCallback

    for cb in callbacks:
        if isinstance(cb, EarlyStopping):
            yield cb
        elif isinstance(cb, KerasCallback) and isinstance(cb.callback, keras.callbacks.EarlyStopping):
            yield cb.callback


def _early_stopping_config(callbacks: Iterable[Callback]) -> dict[str, Any] | None:
    for cb in _early_stoppers(callbacks):
        # Python values: Keras's callback keeps patience=np.int64(3) as given, which json.dumps refuses.
        return {"monitor": str(cb.monitor), "patience": int(cb.patience), "restore_best_weights": bool(cb.restore_best_weights)}
    return None


def early_stopping_outcome(callbacks: Iterable[Callback]) -> dict[str, Any] | None:
    """Whether an EarlyStopping callback stopped the run, and which epoch's weights it restored."""
    from trainkit.callbacks.early_stopping import EarlyStopping

    for cb in _early_stoppers(callbacks):
        if isinstance(cb, EarlyStopping):
            stopped, restored = cb.stopped_epoch, cb.restored_epoch
        else:
            # Keras's: stopped_epoch 0 until it stops (never at epoch 0); its on_train_end, which
            # runs after this one, puts back the best weights whenever it kept them.
            stopped = cb.stopped_epoch if cb.stopped_epoch > 0 else None
            restored = cb.best_epoch if cb.restore_best_weights and cb.best_weights is not None else None
        if stopped is not None or restored is not None:
            return {"stopped_epoch": stopped, "best_epoch": cb.best_epoch, "restored_epoch": restored}
    return None


def recurrent_reach(trainer: Any) -> list[dict[str, Any]]:
    """How far back each recurrent layer's gradient reaches (:mod:`trainkit.time_gradients`).

    A failure to measure it is reported and skipped: a diagnostic extra must not fail a run that
    trained.
    """
    measurer = getattr(trainer, "_time_gradients", None)
    if measurer is None:
        return []
    try:
        return measurer.measure()
    except Exception as err:
        print(f"trainkit: could not measure how far back the recurrent layers' gradients reach: {type(err).__name__}: {err}", file=sys.stderr)
        return []
