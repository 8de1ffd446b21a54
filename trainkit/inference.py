"""``evaluate`` and ``predict`` of a :class:`~trainkit.trainer.Trainer`.

Evaluation runs the trainer's ``test_step`` in a compiled loop of its own, every in-memory batch in
one call (a dataset's streamed several to a call), and reads the metrics exactly as ``fit``'s
validation does. Prediction only calls the model: every batch of arrays, or of a dataset, in one
compiled call (see :mod:`trainkit.predict_loop`).

:class:`Inference` is a mixin rather than an object of its own: both read the trainer's model,
metrics and compiled loops, and ``fit``'s validation shares the evaluation loop.
"""

from __future__ import annotations

import itertools
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from trainkit import distribute
from trainkit.epoch_calls import STREAMING_STEPS_PER_CALL, in_memory_batches
from trainkit.epoch_metrics import row_means, user_scalar_columns
from trainkit.errors import ArgumentError, DataError
from trainkit.fit_data import check_batch_size, check_input_shapes
from trainkit.inputs import accepted_input, epoch_hooks, is_iterator, reraises_source_errors
from trainkit.loop import CompiledLoop, StepOutputs, compile_function, epoch_batches
from trainkit.model_layers import layer_ids
from trainkit.modelbuild import ensure_built
from trainkit.predict_loop import (
    batched_predict_function,
    dataset_predict_function,
    predict_forward,
)
from trainkit.seed_states import stateful_recurrent_layers
from trainkit.sources import (
    SAMPLE_BATCHES,
    ArraySource,
    DatasetSource,
    at_model_rank,
    first_inputs,
    only_read_inputs,
    refuse_text,
    refuse_unbatched,
    streamed,
    unpack_batch,
)
from trainkit.trainer_arguments import is_whole_number, needs_init


class Inference:
    """``evaluate`` and ``predict``, mixed into the Trainer."""

    model: keras.Model
    strategy: tf.distribute.Strategy | None
    _eval_loop: CompiledLoop | None
    _predict_fn: Any
    _predict_dataset_fn: Any
    _predict_arrays_fn: Any
    #: :func:`~trainkit.model_layers.layer_ids` of the model the predict functions were traced for.
    _predict_layer_ids: tuple[int, ...] = ()

    @needs_init
    @reraises_source_errors
    def evaluate(self, x: Any, y: Any = None, *, batch_size: int = 32, sample_weight: Any = None, steps: int | None = None,
                 check_data: bool = True, return_dict: bool = True, verbose: Any = 0) -> dict[str, float] | list[float] | float:
        """Loss and metrics over the whole of ``x`` (numpy or a batched dataset), exactly.

        ``steps`` limits a dataset to its first batches (needed for one that repeats forever).
        ``check_data``: first check the data as ``fit`` does where that holds for data to
        evaluate (shapes, NaN/inf, label format, weights), raising ``DataError``.
        ``return_dict=False`` gives what ``model.evaluate`` gives: the values in order (the
        loss first), or the loss alone when there is nothing else. ``verbose`` is taken for
        Keras code: evaluate prints nothing.
        """
        check_batch_size(batch_size)
        self._refuse_changed_layers()
        x = accepted_input(x)
        if isinstance(x, tf.data.Dataset):
            if not self._reads_inputs_itself():
                x = only_read_inputs(x, self.model)
            if y is not None or sample_weight is not None:
                raise ArgumentError("bad-argument", "With a tf.data.Dataset, y and sample_weight come from the dataset's (x, y, sample_weight) batches: "
                                                    "do not pass them to evaluate.")
            source: Any = DatasetSource(x, steps, "steps", model=self.model)
        elif steps is not None:
            raise ArgumentError("bad-argument", "steps applies to a tf.data.Dataset; numpy data is evaluated whole.")
        else:
            if y is None:
                raise DataError("missing-targets", "evaluate(x, y) needs targets y when x is a numpy array. Pass y, or a tf.data.Dataset yielding (x, y).")
            parts = self._in_memory_parts(x, y, sample_weight, call_rows=self._call_rows(batch_size))
            check_input_shapes(parts[0], self.model)
            source = ArraySource(parts, "x")
        if check_data:  # what fit checks of its data, where it holds for data to evaluate
            checked = source.numpy() if isinstance(source, ArraySource) else (source.sample_for_checks(SAMPLE_BATCHES), None)
            self.check_data(*checked[:2], sample_weight=checked[2] if len(checked) > 2 else None, evaluation=True)
        self._ensure_built(source, batch_size=batch_size)
        results = self._evaluate(source, batch_size)
        if return_dict:
            return results
        values = list(results.values())
        return values[0] if len(values) == 1 else values

    def _build_eval_loop(self, source: Any, batch_size: int) -> CompiledLoop:
        """The compiled evaluation loop, its test step traced (so its names are known)."""
        if self._eval_loop is None or self._eval_loop.names is None:  # not built, or its first trace interrupted (Ctrl-C)
            self._eval_loop = CompiledLoop(self._traced_test_step, jit_compile=False, strategy=self.strategy)
            if self.strategy is not None:
                self._eval_loop.discover_distributed_names(self._distributed_iterator(source, batch_size, None))
            else:
                self._eval_loop.discover_names(source.batch_spec(), **in_memory_batches(source, batch_size))
            self._check_metric_results("eval")
        return self._eval_loop

    def _evaluate(self, source: Any, batch_size: int) -> dict[str, float]:
        self._build_eval_loop(source, batch_size)
        self._reset_metrics("eval")
        calls: list[StepOutputs] = []
        if self.strategy is not None or not isinstance(source, ArraySource):
            if isinstance(source, DatasetSource):
                source.begin_epoch()  # a PyDataset's on_epoch_begin(), where `steps` leaves its pass before its end
            iterator = self._distributed_iterator(source, batch_size, None) if self.strategy is not None else source.epoch_iterator(iter, 0, 0)
            calls.extend(streamed(self._eval_loop, iterator, STREAMING_STEPS_PER_CALL, source))
            if isinstance(source, DatasetSource):
                source.end_epoch()
        else:
            full, partial = epoch_batches(np.arange(source.rows), batch_size)
            tail = tf.constant(partial) if partial is not None else None
            if full.shape[0]:
                calls.append(self._eval_loop.run_in_memory(source.data, tf.constant(full), 0, full.shape[0], full.shape[0], tail))
            elif tail is not None:
                calls.append(self._eval_loop.run_in_memory(source.data, tail, 0, 1, 1))
        if not any(call.steps for call in calls):  # would read as a loss of 0.0
            raise DataError("empty-data", "The evaluation data has no batches: the dataset is empty (check the filter or the take/skip that made it).")
        results = self._metric_results("eval")
        if self._tracked.get("eval") is False:  # an overridden test_step: the mean of its losses
            results.update(row_means([c for c in calls if c.steps and "loss" in c.names], ("loss",)))
        # Whatever else the step returned or logged (a test_step's own values, a log_scalar in
        # compute_loss): its row-weighted mean, as Keras puts every returned key into the logs.
        extra = [name for _, name in user_scalar_columns(self._eval_loop.names or ()) if name not in results] if self._eval_loop else []
        results.update(row_means([c for c in calls if c.steps], extra))
        results.update(self._running_results("eval"))
        return results

    @needs_init
    @reraises_source_errors
    def predict(self, x: Any, *, batch_size: int = 256, steps: int | None = None, verbose: Any = 0) -> Any:
        """Model outputs for ``x`` (numpy or a dataset of inputs), concatenated.

        One array, or for a model with several outputs their structure (a list...) of arrays.
        ``steps`` limits a dataset to its first batches (needed for one that repeats forever).
        ``verbose`` is taken for Keras code: predict prints nothing. A model whose class
        overrides ``keras.Model.predict_step`` (a sigmoid on its logits, an argmax) is predicted
        with that step, given ``(inputs,)`` as ``model.predict`` gives it a batch of arrays.
        """
        check_batch_size(batch_size)
        batch_size = int(batch_size)  # the compiled call takes an int32: np.int64(16) failed in it with a TensorFlow TypeError
        if steps is not None and (not is_whole_number(steps) or steps < 1):
            raise ArgumentError("bad-argument", f"steps must be a positive int (batches to predict) or None, got {steps!r}.")
        if steps is not None and not is_iterator(x) and not isinstance(x, tf.data.Dataset | keras.utils.PyDataset):
            raise ArgumentError("bad-argument", "steps applies to a tf.data.Dataset, a PyDataset or a generator; numpy data is predicted whole.")
        layers = layer_ids(self.model)
        if layers != self._predict_layer_ids:
            # Layers added or replaced since (model.pop(), model.add(...)): the functions traced
            # before call the old ones. Predicting only calls the model, so trace it again, as
            # model.predict does (fit and evaluate refuse it: see trainkit.model_layers).
            self._predict_fn = self._predict_arrays_fn = self._predict_dataset_fn = None
            self._predict_layer_ids = layers
        if self._predict_fn is None:
            # A model's own predict_step is what model.predict returns: calling the model alone
            # returned its logits where model.predict returned the sigmoid's probabilities, in silence.
            self._predict_fn = compile_function(predict_forward(self.model), reduce_retracing=True)
        if is_iterator(x):  # one pass is all predict needs: batches of inputs, as model.predict takes them
            batches = [self._predict_fn(self._checked_inputs(unpack_batch(batch)[0], i)) for i, batch in enumerate(itertools.islice(x, steps))]
            if not batches:
                raise DataError("empty-data", "The generator given to predict yielded no batches. Pass one that yields batches of inputs.")
            return tf.nest.map_structure(lambda *parts: np.concatenate([p.numpy() for p in parts]), *batches)
        x = accepted_input(x, with_targets=False)
        if isinstance(x, tf.data.Dataset):
            x = only_read_inputs(x, self.model)
            if steps is None and int(x.cardinality()) == tf.data.INFINITE_CARDINALITY:
                raise DataError("dataset-infinite", "The tf.data.Dataset repeats forever (.repeat() without a count), so predict would never end. Pass steps=N (batches to predict).")
            refuse_unbatched(x, self.model)
            refuse_text(unpack_batch(x.element_spec)[0], self.model)
            # take(steps) leaves a PyDataset's pass before its end, and so its on_epoch_end(): called here.
            hooks = epoch_hooks(x) if steps is not None else None
            if hooks is not None:
                hooks.begin_epoch()
            iterator = iter(x.take(steps) if steps is not None else x)
            first = next(iterator, None)
            if first is not None:  # every batch in one compiled call (see trainkit.predict_loop)
                self._build_stateful(unpack_batch(x.element_spec)[0], lambda: unpack_batch(first)[0])
                if self._predict_dataset_fn is None:
                    self._predict_dataset_fn = dataset_predict_function(self.model)
                outputs = self._predict_dataset_fn(self._checked_inputs(unpack_batch(first)[0], 0), iterator)
                if hooks is not None:
                    hooks.end_epoch()
                return tf.nest.map_structure(lambda t: t.numpy(), outputs)
            batches = []
        else:
            parts = self._in_memory_parts(x, only_read=True)  # predict only calls the model
            check_input_shapes(parts[0], self.model)
            source = ArraySource(parts)
            (data,) = source.data
            if source.rows:  # every batch in one compiled call (see trainkit.predict_loop)
                self._build_stateful(unpack_batch(source.batch_spec())[0], lambda: first_inputs(source, batch_size))
                if self._predict_arrays_fn is None:
                    self._predict_arrays_fn = batched_predict_function(self.model)
                return tf.nest.map_structure(lambda t: t.numpy(), self._predict_arrays_fn(data, tf.constant(batch_size)))
            batches = []
        if not batches:  # no rows: the outputs' structure and shapes, with none
            if not isinstance(x, tf.data.Dataset):
                return tf.nest.map_structure(lambda t: t.numpy(), self._predict_fn(data))
            # A dataset with no batches: traced (not run) on its inputs' spec, as the arrays above
            # are run on no rows, instead of one flat empty array whatever the outputs.
            outputs = self._predict_fn.get_concrete_function(unpack_batch(x.element_spec)[0]).structured_outputs
            return tf.nest.map_structure(lambda t: np.zeros([d or 0 for d in t.shape], t.dtype.as_numpy_dtype), outputs)
        return tf.nest.map_structure(lambda *parts: np.concatenate([p.numpy() for p in parts]), *batches)

    def _build_stateful(self, input_spec: Any, first_batch: Any) -> None:
        """Builds an unbuilt model with a ``stateful=True`` recurrent layer on its first batch, as
        ``model.predict`` does: traced first in the compiled call, on batches of unknown rows, it
        could not build its states ("the batch size must be static")."""
        if stateful_recurrent_layers(self.model) and not (self.model.built and self.model.variables):
            with distribute.scope(self.strategy):
                ensure_built(self.model, input_spec, first_batch)

    def _checked_inputs(self, inputs: Any, index: int) -> Any:
        """A batch to predict, its shapes checked against the model's inputs (the first batch
        only: the others of a dataset share its spec), at the model's rank (see
        :func:`~trainkit.sources.at_model_rank`): a generator's batches come as they are, and
        ``(b,)`` ones after ``(b, 1)`` ones relaxed the traced shape to an unknown rank."""
        if index == 0:
            check_input_shapes(inputs, self.model)
        return at_model_rank(inputs, self.model)
