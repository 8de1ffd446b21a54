"""How the data given to a :class:`~trainkit.trainer.Trainer`'s ``fit`` becomes batch sources.

``fit``'s arguments (arrays or a dataset, ``validation_data`` or ``validation_split``,
``sample_weight``, ``class_weight``, ``steps_per_epoch``...) become a training and a validation
source (:mod:`trainkit.sources`), refused with a stable code where they do not go together; the
data checks run on them, and the model and optimizer are built for them before anything is
traced. What each argument may be is :mod:`trainkit.inputs`'s.

:class:`FitData` is a mixin rather than an object of its own: it reads the trainer's model,
strategy, seed and output heads, and the data checks are the trainer's overridable
:meth:`~trainkit.trainer.Trainer.check_data`.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

from trainkit import class_weights, distribute, multioutput
from trainkit.checks.data_checks import (
    DATA_ERROR_CODES,
    DATA_INFO_CODES,
    DATA_NOT_INSPECTABLE,
    DATA_WARNING_CODES,
)
from trainkit.checks.data_sampling import draws_rows
from trainkit.errors import ArgumentError, DataError, closest
from trainkit.findings import Finding
from trainkit.inputs import accepted_input
from trainkit.model_layers import layer_ids, refuse_changed_layers
from trainkit.modelbuild import ensure_built
from trainkit.seed_states import stateful_recurrent_layers
from trainkit.sources import (
    SAMPLE_BATCHES,
    ArraySource,
    DatasetSource,
    first_inputs,
    in_memory_parts,
    only_read_inputs,
    refuse_text,
    unpack_batch,
)
from trainkit.trainer_arguments import is_whole_number

#: The codes of the findings the data checks make (errors an ``allow`` downgraded included).
_DATA_CHECK_CODES = frozenset({*DATA_ERROR_CODES, *DATA_WARNING_CODES, *DATA_INFO_CODES, DATA_NOT_INSPECTABLE})

#: ``fit(shuffle=...)``: numpy rows in a new order every epoch (``True``), in their own order
#: (``False``), or, as ``model.fit`` reads ``"batch"``, batched as they come (the same rows in the
#: same batches every epoch) with each batch's rows shuffled among themselves.
Shuffle = bool | Literal["batch"]



#: What errors call the parts of ``validation_data`` (the training data's are x, y, sample_weight).
VALIDATION_NAMES = ("x_val", "y_val", "val_sample_weight")


class FitData:
    """Batch sources from ``fit``'s and ``evaluate``'s data arguments, mixed into the Trainer.

    Calls the trainer's ``check_data``, ``_count_outputs`` and ``_variables_to_optimize``.
    """

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    strategy: tf.distribute.Strategy | None
    seed: int
    heads: list[multioutput.Head]
    findings: list[Finding]
    _metrics: list[keras.metrics.Metric]
    #: The output each of ``_metrics`` measures (``None``: the model's one output).
    _metric_outputs: list[int | None]
    #: Where ``validation_split`` cut the caller's arrays (the validation rows start there), or ``None``.
    _split_at: int | None = None
    #: :func:`~trainkit.model_layers.layer_ids` of the model once built, or ``None`` before.
    _layer_ids: tuple[int, ...] | None = None
    #: The checks' warnings the next fit that shows its progress prints (see ``Trainer._show_check_warnings``).
    _unshown_checks: list[Finding] = []  # noqa: RUF012 - replaced, never mutated

    def _sources(self, x: Any, y: Any, sample_weight: Any, validation_data: Any, validation_split: float,
                 steps_per_epoch: int | None = None, validation_steps: int | None = None, class_weight: Any = None,
                 shuffle: Shuffle = False, batch_size: int | None = None) -> tuple[Any, Any]:
        pydataset = type(x).__name__ if isinstance(x, keras.utils.PyDataset) else None
        x = accepted_input(x, shuffle_seed=self.seed if shuffle else None)
        validation_data = accepted_input(validation_data, "validation_data")
        self._split_at = None
        if isinstance(x, tf.data.Dataset) and not self._reads_inputs_itself():
            x = only_read_inputs(x, self.model)
        if isinstance(validation_data, tf.data.Dataset) and not self._reads_inputs_itself():
            validation_data = only_read_inputs(validation_data, self.model)
        if isinstance(x, tf.data.Dataset):
            if validation_split:
                raise DataError("validation-split-dataset", "validation_split needs numpy arrays; with a tf.data.Dataset pass validation_data=... instead.")
            if y is not None or sample_weight is not None:
                raise ArgumentError("bad-argument", "With a tf.data.Dataset, y and sample_weight come from the dataset's (x, y, sample_weight) batches: do not pass them to fit.")
            try:
                train: Any = DatasetSource(x, steps_per_epoch, carry_on=True, model=self.model)
            except DataError as err:
                if err.code != "missing-targets" or not self._targets_hint():
                    raise
                raise DataError("missing-targets", f"{err.message} {self._targets_hint(dataset=True)}") from None
            refuse_text(unpack_batch(x.element_spec)[0], self.model)
            if class_weight is not None:
                _check_one_target(x.element_spec[1], self.heads, dataset=True, model=self.model)
                train = DatasetSource(class_weights.weighted_dataset(x, class_weight), steps_per_epoch, carry_on=True)
            train.pydataset = pydataset  # the checks' advice is for its rows, not for a tf.data pipeline
        else:
            if steps_per_epoch is not None:
                raise ArgumentError("bad-argument", "steps_per_epoch applies to a tf.data.Dataset; with numpy arrays an epoch is every row once (set batch_size instead).")
            if y is None:
                raise DataError("missing-targets", f"fit(x, y) needs targets y when x is a numpy array. Pass y, or a tf.data.Dataset yielding (x, y). {self._targets_hint()}".rstrip())
            if not 0.0 <= validation_split < 1.0:
                raise ArgumentError("bad-argument", f"validation_split must be in [0, 1), got {validation_split}.")
            parts = self._in_memory_parts(x, y, sample_weight, call_rows=self._call_rows(batch_size))
            if validation_split and validation_data is None:
                # Like Keras: the last rows, taken before any shuffling (numpy views: no copy).
                cut = self._split_at = int(len(tf.nest.flatten(parts)[0]) * (1.0 - validation_split))
                validation_data = [tf.nest.map_structure(lambda a: a[cut:], part) for part in parts]
                parts = [tf.nest.map_structure(lambda a: a[:cut], part) for part in parts]
            if class_weight is not None:  # the training rows only, as model.fit weights them
                _check_one_target(parts[1], self.heads, model=self.model)
                val_y = validation_data[1] if isinstance(validation_data, tuple | list) and len(validation_data) > 1 else None
                parts = [parts[0], parts[1], class_weights.row_weights(class_weight, parts[1], parts[2] if len(parts) > 2 else None, val_y)]
            train = ArraySource(parts, "the training data" if validation_split else "x")
        validation = None
        if validation_data is not None:
            if isinstance(validation_data, tf.data.Dataset):
                validation = DatasetSource(validation_data, validation_steps, "validation_steps", model=self.model)
                refuse_text(unpack_batch(validation_data.element_spec)[0], self.model, "The validation tf.data.Dataset")
            elif validation_steps is not None:
                raise ArgumentError("bad-argument", "validation_steps applies to a validation tf.data.Dataset; numpy validation data is evaluated whole.")
            else:
                if not isinstance(validation_data, tuple | list) or len(validation_data) not in (2, 3):
                    got = f"a {type(validation_data).__name__}" + (f" of {len(validation_data)}" if isinstance(validation_data, tuple | list) else "")
                    raise ArgumentError("bad-argument", f"validation_data must be (x_val, y_val), (x_val, y_val, sample_weight) or a batched tf.data.Dataset; got {got}.")
                if validation_data[1] is None:
                    raise DataError("missing-targets", "validation_data needs its targets: pass (x_val, y_val), not (x_val, None).")
                validation = ArraySource(self._in_memory_parts(*validation_data, names=VALIDATION_NAMES, call_rows=self._call_rows(batch_size)), "validation_data")
        return train, validation

    def _targets_hint(self, dataset: bool = False) -> str:
        """Advice for data without targets (``""``: none); the Trainer gives some to a subclass
        whose own ``train_step`` may need none (a GAN, a VAE)."""
        return ""

    def _refuse_placeholder_validation(self, train: Any, validation: Any) -> None:
        """Refuses validation data for the default ``test_step`` when the targets are placeholders.

        A ``train_step`` of its own that uses no targets takes placeholders of one value (see
        ``_targets_hint``); the default ``test_step`` it inherits gives them to the trainer's loss.
        An autoencoder fitted so reported val_loss 0.15 (its outputs against zeros) where it
        reconstructed the validation rows at 0.89, and early stopping and the diagnosis went by it.
        Targets of one value in both the training and the validation rows are that case: data
        to learn from would be refused as constant (or single-class) by the data checks.

        Raises:
            ArgumentError: ``validation-needs-test-step``.
        """
        if validation is None or not _overrides(self, ("train_step",)) or _overrides(self, ("test_step", "compute_loss")):
            return
        value = _one_target_value(train)
        if value is None or not _samples_speak_for_all(train) or _one_target_value(validation) is None:
            return
        raise ArgumentError(
            "validation-needs-test-step",
            f"The training and the validation targets are all {value:g}: placeholders for a train_step of its own that uses no targets. "
            f"{type(self).__name__} overrides train_step but not test_step, and the default test_step gives the placeholders to the "
            f"trainer's loss: val_loss would measure the model against them, a number that says nothing about it (which early stopping "
            f"and the diagnosis would go by). Override test_step to compute the loss train_step computes (returning {{'loss': ...}}), "
            f"or pass no validation data.")

    def _call_rows(self, batch_size: int | None) -> int:
        """The rows a call that counts a subclassed model's outputs reads: one, but a batch of fit's
        ``batch_size`` where a ``stateful=True`` layer that call builds takes its states' rows from it."""
        return batch_size if batch_size and stateful_recurrent_layers(self.model) else 1

    def _in_memory_parts(self, x: Any, y: Any = None, sample_weight: Any = None, only_read: bool | None = None,
                         names: tuple[str, str, str] = ("x", "y", "sample_weight"), call_rows: int = 1) -> list[Any]:
        # In the strategy's scope: counting a subclassed model's outputs calls (and so builds) it,
        # and its variables must be mirrored. ``only_read``: leave out the dict entries the model
        # does not read; by default unless a step of its own may read them. ``names``: what errors
        # call the parts (validation data's said "x holds ...").
        if only_read is None:
            only_read = not self._reads_inputs_itself()
        with distribute.scope(self.strategy):
            if not self._outputs_counted and isinstance(y, list | tuple) and any(t is None for t in y):
                # A subclassed model's outputs are known only from a call: counted first, so that
                # fit(x, [y_a, None]) is read by them as a Functional model's is.
                inputs = in_memory_parts(self.model, x, only_read=only_read, names=names)[0]
                self._count_outputs(lambda: inputs, call_rows)
            return in_memory_parts(self.model, x, self._named_targets(y), sample_weight, only_read=only_read, names=names, call_rows=call_rows)

    def _named_targets(self, y: Any) -> Any:
        """``y`` as a dict by output name when it is a list with ``None`` for outputs trained
        without a loss: ``fit(x, [y_a, None])``, which ``model.fit`` takes, read ``None`` as a target
        of shape ``()`` and was refused (shape-mismatch)."""
        if not isinstance(y, list | tuple) or not any(t is None for t in y) or not self._outputs_counted or len(y) != len(self.heads):
            return y
        untrained = [h.name for h, t in zip(self.heads, y, strict=True) if t is None and h.loss is not None]
        if untrained:
            raise DataError("missing-targets", f"y has None for the output{'s' if len(untrained) > 1 else ''} {', '.join(repr(n) for n in untrained)}, "
                                               "which the loss trains: pass its targets, or loss None for an output trained on nothing.")
        return {h.name: t for h, t in zip(self.heads, y, strict=True) if t is not None}

    def _check_sources(self, train: Any, validation: Any, batch_size: int, shuffle: Shuffle | None = None) -> None:
        # A dataset's first batches are sampled from the ones it keeps (one pass, see
        # DatasetSource.sample), like a validation dataset's.
        parts = train.numpy() if isinstance(train, ArraySource) else (train.sample_for_checks(SAMPLE_BATCHES), None)
        x, y = parts[:2]
        weights = parts[2] if len(parts) > 2 else None  # class_weight is already folded in
        x_val = y_val = val_weights = None
        if isinstance(validation, ArraySource):
            val_parts = validation.numpy()
            x_val, y_val = val_parts[:2]
            val_weights = val_parts[2] if len(val_parts) > 2 else None
        elif validation is not None:
            x_val = validation.sample_for_checks(SAMPLE_BATCHES)
        # A dataset brings its own batches: batch_size does not apply to it.
        rows_per_batch = batch_size if isinstance(train, ArraySource) else None
        found = self.check_data(x, y, x_val, y_val, sample_weight=weights, batch_size=rows_per_batch, val_sample_weight=val_weights, split_at=self._split_at,
                                complete=isinstance(train, ArraySource), shuffle=shuffle if isinstance(train, ArraySource) else None)
        # This fit's data checks replace an earlier fit's: a trainer fitted three times listed
        # unscaled-inputs three times, and kept it after a fit on data standardised since.
        self.findings[:] = [*(f for f in self.findings if f.code not in _DATA_CHECK_CODES), *found]
        self._unshown_checks = [*(f for f in self._unshown_checks if f.code not in _DATA_CHECK_CODES),
                                *(f for f in found if f.severity != "info")]

    def _ensure_built(self, train: Any, resume: bool = False, batch_size: int | None = None) -> None:
        """Builds the model and the optimizer's slots before anything is traced (on a resume, for
        the variables the checkpoint's optimizer holds: :meth:`_variables_to_optimize`).

        Building the optimizer up front also avoids "You must feed a value for placeholder"
        under tf.distribute (keras-team/keras#19246).
        """
        with distribute.scope(self.strategy):
            # A stateful layer first built by this call takes its states' rows from it: the batch's.
            rows = batch_size if batch_size and stateful_recurrent_layers(self.model) else 32
            ensure_built(self.model, unpack_batch(train.batch_spec())[0], lambda: first_inputs(train, rows))
            self._count_outputs(lambda: first_inputs(train, rows), self._call_rows(batch_size))
            if not self.optimizer.built:
                self.optimizer.build(self._variables_to_optimize(resume))
        if self._layer_ids is None:  # a model first built now: its layers are those from here on
            self._layer_ids = layer_ids(self.model)
        self._check_targets_cover_outputs(unpack_batch(train.batch_spec())[1])

    def _refuse_changed_layers(self) -> None:
        """Refuses to go on with a model whose layers changed since this trainer had it built
        (see :mod:`trainkit.model_layers`), before its data is checked against the old layers."""
        if self._layer_ids is not None:
            refuse_changed_layers(self._layer_ids, self.model)

    def _reads_inputs_itself(self) -> bool:
        """Whether a subclass reads the inputs in a step of its own, which may read dict entries
        no model input is named after (a per-row mask): those are then kept, as before
        :func:`~trainkit.sources.read_keys` left them out (a KeyError in that step)."""
        return _overrides(self, ("train_step", "test_step", "compute_loss"))

    def _reads_targets_itself(self) -> bool:
        """Whether a subclass reads the targets in code of its own, which may use keys that name
        no output (a mask, say)."""
        return _overrides(self, ("train_step", "test_step", "compute_loss", "update_metrics"))

    def _check_targets_cover_outputs(self, targets: Any, y: str = "y") -> None:
        """Refuses targets by name that leave out an output with a loss, or that name no output
        (before any trace); ``y`` names them in the message (``"validation_data's y"``)."""
        if len(self.heads) < 2 or not isinstance(targets, Mapping):
            return
        names = [h.name for h in self.heads]
        given = multioutput.targets_per_output(targets, None, names)
        # A misspelt key is the likely cause of either: name it, as a misspelt input name is named.
        unknown = [key for key in targets if key not in names]
        missing = [h.name for h, target in zip(self.heads, given, strict=True) if h.loss is not None and target is None]
        instead = f" ({y} has {', '.join(map(repr, unknown))} instead)" if unknown else ""
        if missing:
            raise DataError("missing-targets", f"{y} has no targets for output {missing[0]}, which has a loss{instead}: give every trained output its "
                            f"targets (by name: {', '.join(h.name for h in self.heads if h.loss is not None)}).")
        # An output with metrics but neither a loss nor targets: its metrics were never updated and
        # read 0.0 in the History, a perfect mae (model.fit fails on such targets).
        unmeasured = [] if self._reads_targets_itself() else [
            (self.heads[i].name, metric.name) for metric, i in zip(self._metrics, self._metric_outputs, strict=True) if i is not None and given[i] is None]
        if unmeasured:
            name, metric = unmeasured[0]
            raise DataError("missing-targets", f"{y} has no targets for output {name}, which has metrics ({metric}){instead}: give it its "
                            f"targets, or leave its metrics out (they would read 0).")
        if unknown and not self._reads_targets_itself():
            # Read by nobody, they were dropped without a word (model.fit refuses them).
            raise DataError("shape-mismatch", f"{y} has targets under {unknown[0]!r}, which names none of the model's outputs ({', '.join(names)})."
                            f"{closest(str(unknown[0]), names)} Name every target after its output, or leave out the ones no output trains on.")


def _one_target_value(source: Any) -> float | None:
    """The one value every target of ``source`` holds (an :class:`ArraySource`'s arrays, a
    :class:`DatasetSource`'s sampled batches), or ``None`` when they hold several (or none)."""
    batches = [source.arrays] if isinstance(source, ArraySource) else source.sample(SAMPLE_BATCHES)
    values: set[float] = set()
    for batch in batches:
        for target in tf.nest.flatten(unpack_batch(batch)[1]):
            a = np.asarray(target)
            if a.size == 0 or a.dtype.kind not in "biuf" or a.min() != a.max():  # NaN != NaN: not one value either
                return None
            values.add(float(a.min()))
            if len(values) > 1:
                return None
    return values.pop() if values else None


def _samples_speak_for_all(source: Any) -> bool:
    """Whether one value in ``source``'s sampled targets is one value in all of them: arrays, or a
    dataset that shuffles (its first batches are a random draw) or whose sampled batches are all
    of it. A never-shuffled dataset sorted by label starts with batches of one class: with a
    validation dataset sorted too, a train_step of its own that uses its labels (2,000 rows each,
    half class 0, batch 32) was refused, its labels called placeholders."""
    if isinstance(source, ArraySource):
        return True
    cardinality = int(source.dataset.cardinality())
    return draws_rows(source.dataset) is True or 0 <= cardinality <= SAMPLE_BATCHES


def _overrides(instance: Any, names: Sequence[str]) -> bool:
    """Whether ``instance``'s class overrides any of the Trainer's methods ``names``."""
    from trainkit.trainer import Trainer  # here: trainer.py imports this module

    return any(getattr(type(instance), name) is not getattr(Trainer, name) for name in names)


def check_input_shapes(x: Any, model: keras.Model) -> None:
    """Refuses inputs whose shapes the model cannot take (the data check, for evaluate and predict)."""
    from trainkit.checks.shape_checks import check_input_shapes

    check_input_shapes(tf.nest.map_structure(np.asarray, x), model)


def _check_one_target(targets: Any, heads: Sequence[multioutput.Head], dataset: bool = False, model: keras.Model | None = None) -> None:
    """Refuses class_weight for several outputs (targets given as a structure), as model.fit does,
    and for a ``model`` predicting per position; ``dataset``: the targets are a dataset's (its
    element spec), which has no ``y`` to index."""
    structure = isinstance(targets, tuple | list | Mapping)
    if len(heads) > 1 or (structure and len(targets) != 1):
        raise ArgumentError("bad-argument", "class_weight applies to a model with one output (as with model.fit); pass sample_weight instead: one weight per row (from one "
                                            "output's labels, say), which weighs every output's loss.")
    if structure:  # the one output's targets in a dict or list: "a model with one output" misled
        inner = f"y[{next(iter(targets))!r}]" if isinstance(targets, Mapping) else "y[0]"
        # A dataset's batches hold the structure: "pass y['out']" named an array the caller does not have.
        fix = f"map the dataset to yield that tensor itself, dataset.map(lambda x, y: (x, {inner}))" if dataset else f"pass that array itself, {inner}"
        raise ArgumentError("bad-argument", f"class_weight reads class ids from one array of targets, but y is a {type(targets).__name__} holding the model's one "
                                            f"output's targets (model.fit refuses it too): {fix}.")
    outputs = getattr(model, "outputs", None) or []  # a subclassed model's are unknown before its first call
    if len(outputs) == 1 and len(outputs[0].shape) > 2:
        # [batch, T, k] predictions, (n, T) class ids: a row holds a class per timestep, and the
        # argmax over its T ids (read as a one-hot row) weighed it by a position, in silence.
        raise ArgumentError("bad-argument", f"class_weight weighs each row by its one class, but the model predicts per position (output shape "
                                            f"{tuple(outputs[0].shape)}): a row holds a class per position. Leave class_weight out, and weigh the "
                                            f"classes in the loss: keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=...) for a "
                                            f"sigmoid output, CategoricalFocalCrossentropy(alpha=[...]) on one-hot targets, keras.losses.Dice(), "
                                            f"or a loss of your own.")
    if heads and heads[0].task == "regression":  # its targets are no class ids (a rounded -2.7 indexed the weights)
        raise ArgumentError("bad-argument", "class_weight weighs the classes of a classification task; a regression task has none. Weigh rows with sample_weight instead.")
    if heads and heads[0].task == "multilabel":
        # A multi-hot row holds several labels (or none): read as one class, by its argmax as
        # model.fit reads it, a row weighed its first positive label's weight and an all-zero row
        # class 0's, in silence.
        raise ArgumentError("bad-argument", "class_weight weighs each row by its one class, but a multilabel row holds several labels (or none): "
                                            "read as one class (model.fit takes its first 1), rows would be weighed by the first label they hold. "
                                            "Leave class_weight out; for rare labels use loss=BinaryFocalCrossentropy(apply_class_balancing=True, alpha=0.9) (alpha weighs the 1s, "
                                            "1 - alpha the 0s: its default 0.25 weighs the 1s down), "
                                            "a loss of your own weighing each label's positives, or sample_weight (one weight per row).")


def check_epochs(epochs: int, initial_epoch: int) -> None:
    """Refuses ``epochs`` or ``initial_epoch`` that are not non-negative integers, and an
    ``initial_epoch`` past ``epochs`` (nothing would train, and the History would be empty)."""
    for name, value in (("epochs", epochs), ("initial_epoch", initial_epoch)):
        if not is_whole_number(value) or value < 0:
            raise ArgumentError("bad-argument", f"{name} must be a non-negative integer, got {value!r}.")
    if initial_epoch > epochs:
        raise ArgumentError("bad-argument", f"initial_epoch={initial_epoch} is past epochs={epochs}: epochs is the index of the last epoch to train, "
                                            f"not how many more (as in model.fit), so nothing would train. Pass epochs > {initial_epoch}.")


def check_fit_options(validation_split: Any, callbacks: Any, shuffle: Any = True) -> None:
    """Refuses a ``validation_split`` that is not a number, ``callbacks`` that are not a list (or
    ``None``, ``model.fit``'s default: none) and a ``shuffle`` that is neither a bool nor ``"batch"``."""
    if not isinstance(shuffle, bool | np.bool_) and shuffle != "batch":
        # A string was read as true: shuffle="false" shuffled.
        raise ArgumentError("bad-argument", f"shuffle must be True, False or \"batch\", got {shuffle!r}.")
    if isinstance(validation_split, bool | np.bool_) or not isinstance(validation_split, numbers.Real):
        raise ArgumentError("bad-argument", f"validation_split must be a number in [0, 1), got {validation_split!r}.")
    if callbacks is None:
        return
    if hasattr(callbacks, "on_epoch_end") or isinstance(callbacks, str) or not hasattr(callbacks, "__iter__"):
        raise ArgumentError("bad-argument", f"callbacks must be a list of callbacks, got {callbacks!r}: "
                                            "pass callbacks=[EarlyStopping(...)] (a list, even of one), or leave it out.")


def verbosity(verbose: Any) -> int:
    """``fit``'s ``verbose`` as ``model.fit`` reads it: 0 silent, 1 a progress bar and a line per
    epoch, 2 the lines only; ``"auto"`` is 1.

    Raises:
        ArgumentError: ``bad-argument`` for anything else (``"silent"`` or -1 printed every epoch).
    """
    if isinstance(verbose, str) and verbose == "auto":
        return 1
    if isinstance(verbose, bool | np.bool_) or (isinstance(verbose, numbers.Integral) and 0 <= verbose <= 2):
        return int(verbose)
    raise ArgumentError("bad-argument", f"verbose must be 0 (silent), 1 (a progress bar and a line per epoch), 2 (a line per epoch) or "
                                        f"\"auto\" (1), got {verbose!r}.")


def check_batch_size(batch_size: int, name: str = "batch_size") -> None:
    """Refuses a ``batch_size`` that is not a positive integer; ``name`` is the argument's, for the message."""
    if not is_whole_number(batch_size) or batch_size < 1:
        raise ArgumentError("bad-argument", f"{name} must be a positive integer, got {batch_size!r}.")
