"""Builds the compiled functions that repeat a step many times per call.

A *step* is any function ``step(batch) -> dict[str, scalar tensor]`` (the trainer's ``train_step``
or ``test_step``). This module repeats it inside one ``tf.function`` so no Python runs per step, and
packs what each step returns into one ``[steps, 1 + n]`` float32 buffer: column 0 holds the batch's
row count, the other columns the step's scalars in the order of :attr:`CompiledLoop.names`. The
outer Python loop reads that buffer once per call; nothing here formats strings or touches numpy.

Two paths:

* **in-memory** (numpy data): the data tensors and the epoch's ``[batches, B]`` matrix of row
  indices are arguments; a ``tf.while_loop`` runs ``num_steps`` batches from ``start``, so calls
  of any length reuse one trace. Under XLA their rows go to a buffer of fixed ``capacity``
  (unwritten rows read as zeros); without it, to one sized to the call, and learning the step's
  names is this loop's own trace (:meth:`CompiledLoop.discover_names`). The partial last batch
  of an epoch (its own ``[1, r]`` index matrix, so every row is seen exactly once and nothing is
  padded) runs after the full ones in the call that ends the epoch: a second trace of the step
  per fit, not a second call per epoch.
* **streaming** (``tf.data``): up to ``K`` batches are pulled from an iterator inside the call,
  stopping early when the iterator runs dry; without XLA, learning the step's names is this
  loop's own trace too. With an XLA step, equally shaped batches are stacked
  (at most :data:`STACK_BYTES` of them) and each stack runs in one XLA-compiled loop, as in memory:
  one XLA launch a batch cost ~10x the small MLP's step.

Under a ``tf.distribute`` strategy only the streaming path runs: the iterator yields distributed
batches, each step runs on every replica with ``strategy.run``, and its scalars are reduced across
replicas (:mod:`trainkit.distribute`) before they are packed into the buffer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
import types
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops
from tensorflow.python.util import tf_decorator

from trainkit.background import workers_turn
from trainkit.errors import ArgumentError, TrainkitError
from trainkit.stat_names import counted_over_rows

StepFn = Callable[[Any], Mapping[str, tf.Tensor]]
#: Batches a streaming call stacks and runs in one XLA loop (see CompiledLoop._build_chunked_streaming).
_STREAM_CHUNK = 32
#: Bytes of batches one stack may hold: fewer, larger batches a stack (the stack and its padded
#: copy live together), and none stacked when one batch is larger.
STACK_BYTES = 64 * 2**20


@dataclasses.dataclass(frozen=True)
class StepOutputs:
    """What one compiled call returns, already on the host.

    Attributes:
        names: The names of the step's scalars, one per column of ``values``.
        values: ``[steps, len(names)]`` float array of what each step returned.
        batch_sizes: ``[steps]`` number of rows in each step's batch.
    """

    names: tuple[str, ...]
    values: np.ndarray
    batch_sizes: np.ndarray

    @property
    def steps(self) -> int:
        """Number of steps this call ran."""
        return int(self.values.shape[0])

    def as_dict(self) -> dict[str, np.ndarray]:
        """Per-step values keyed by name, each shaped ``[steps]``."""
        return {name: self.values[:, i] for i, name in enumerate(self.names)}


def _scalar(value: Any) -> tf.Tensor:
    """``value`` as a float32 scalar; adds no op for one already is (most of a step's ~45)."""
    value = tf.cast(value, tf.float32)
    return value if value.shape.rank == 0 else tf.reshape(value, [])


def _flatten_logs(logs: Mapping[str, tf.Tensor], names: tuple[str, ...], batch: Any) -> tf.Tensor:
    """Packs a step's scalars (and its batch size) into one float32 row."""
    first = tf.nest.flatten(batch)[0]
    return tf.stack([tf.cast(tf.shape(first)[0], tf.float32)] + [_scalar(logs[name]) for name in names])


def _pack_row(logs: Mapping[str, tf.Tensor], names: tuple[str, ...], rows: tf.Tensor) -> tf.Tensor:
    """Packs reduced scalars and the global batch's row count into one float32 row."""
    return tf.stack([tf.cast(rows, tf.float32)] + [_scalar(logs[name]) for name in names])


@contextlib.contextmanager
def trainkit_errors_unwrapped() -> Iterator[None]:
    """Re-raises a trainkit error that a step raised while being traced, as itself.

    AutoGraph re-raises an error from converted code as a new exception of its type only when
    that type takes one message argument; a :class:`TrainkitError` (code and message) comes out as
    a ``StagingError`` without its ``.code``. The original is the wrapper's ``__context__``.
    """
    try:
        yield
    except Exception as err:
        seen, cause = set(), err
        while cause is not None and id(cause) not in seen:
            if isinstance(cause, TrainkitError):
                raise cause from None
            seen.add(id(cause))
            cause = cause.__cause__ or cause.__context__
        raise


def compile_function(fn: Callable[..., Any], **options: Any) -> Any:
    """``tf.function(fn, **options)`` for a function built once per trainer.

    TensorFlow's frequent-retracing warning keys functions by their code object, so the first
    trace of every new trainer's loop in a process (a sweep, a test suite, a benchmark) counts as
    a retrace of the previous trainer's and after five it warns of "excessive retracing" that is
    not happening: each of these functions is traced once per input signature (the tests check
    ``experimental_get_tracing_count``). The warning is turned off for these functions only.

    AutoGraph is off, as in Keras's own train functions: trainkit writes its control flow with
    ``tf.cond`` and ``tf.while_loop``, and converting its step (statistics and all) took ~3.4 s
    of a small MLP's first ``fit`` (5.7 -> 2.3 s). A subclass's own step methods are converted
    where the trainer is built (:func:`autograph_overrides`).

    The gradient functions that ``tf.custom_gradient`` registers while the function is traced
    are released when the function is garbage-collected (see :func:`releasing_custom_gradients`):
    TensorFlow would keep them, and through them every graph the function traced, for the life of
    the process.
    """
    function = tf.function(fn, **{"autograph": False, **options})
    function._omit_frequent_tracing_warning = True  # see above; no public switch exists
    return releasing_custom_gradients(function)


def _gradient_registry() -> dict[str, Any] | None:
    """TensorFlow's process-wide table of gradient functions by op type (``None`` if it moved)."""
    registry = getattr(getattr(tf_ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


def _custom_gradient_names() -> set[str]:
    registry = _gradient_registry()
    # set() of a dict with str keys runs without releasing the GIL: no other thread changes it meanwhile.
    return {name for name in set(registry or ()) if name.startswith("CustomGradient-")}


#: Control-flow ops whose branches or bodies are graphs of the same trace (not functions of their
#: own), and the attributes that name those graphs.
_CONTROL_FLOW_OPS = frozenset({"While", "StatelessWhile", "If", "StatelessIf", "Case", "StatelessCase"})
_CONTROL_FLOW_ATTRS = ("cond", "body", "then_branch", "else_branch", "branches")


def _own_gradient_names(graph: Any) -> set[str] | None:
    """The custom-gradient names the ops of ``graph`` and of its control-flow bodies carry; not
    those of a ``tf.function`` it calls, which keeps its own graph (and needs its names) when
    this one is gone. ``None`` when the graph cannot be read so (TensorFlow's internals moved).
    """
    names: set[str] = set()
    functions: dict[str, Any] = {}
    stack, seen = [graph], set()
    try:
        while stack:
            current = stack.pop()
            if id(current) in seen:
                continue
            seen.add(id(current))
            functions.update(getattr(current, "_functions", {}))
            for op in current.get_operations():
                attrs = op.node_def.attr
                if "_gradient_op_type" in attrs:
                    names.add(op.get_attr("_gradient_op_type").decode())
                if op.type not in _CONTROL_FLOW_OPS:
                    continue
                for key in _CONTROL_FLOW_ATTRS:
                    if key in attrs:
                        value = attrs[key]
                        called = [f.name for f in value.list.func] if value.HasField("list") else [value.func.name]
                        stack.extend(functions[name].graph for name in called if getattr(functions.get(name), "graph", None) is not None)
    except (AttributeError, TypeError, ValueError):
        return None
    return names


def _release_custom_gradients(names: list[str]) -> None:
    registry = _gradient_registry()
    if registry is not None:
        for name in names:
            registry.pop(name, None)
    names.clear()


def releasing_custom_gradients(function: Any) -> Any:
    """Makes ``function`` (a ``tf.function`` not traced yet) release, once it is garbage-collected,
    the gradient functions that ``tf.custom_gradient`` registered while it traced.

    In a graph, ``tf.custom_gradient`` registers its gradient under a new name
    (``CustomGradient-<n>``) in TensorFlow's process-wide gradient registry and never removes
    it; the gradient function holds tensors of the graph being traced, so every graph that ever
    used one stays in memory with all its operations. Keras's optimizers use one (the all-reduce
    of the gradients, in every ``optimizer.apply`` traced in a ``tf.function``, even on one
    device), so each trainer's train step kept its whole traced loop alive after the trainer
    was gone: ~8 MB a trial of a sweep of a small MLP in one process (benchmarks/RESULTS.md,
    session 26). Nothing can differentiate through a graph of a function that is gone, so the
    names registered during its traces go with it: only those that ops of its own graph and its
    control-flow bodies carry (:func:`_own_gradient_names`). A ``tf.function`` of the user's
    traced for the first time inside this one keeps its graph and its names, which a later
    gradient through it needs (that raised a ``LookupError`` when they were released with this one).
    """
    if _gradient_registry() is None or not callable(getattr(function, "_decorate", None)):
        return function  # a TensorFlow whose internals moved: keep the names, as before, rather than fail
    names: list[str] = []

    def traced(*args: Any, **kwargs: Any) -> Any:
        before = _custom_gradient_names()
        try:
            return traced.__wrapped__(*args, **kwargs)  # AutoGraph may put a converted function there
        finally:
            own = _own_gradient_names(tf_ops.get_default_graph())
            if own is not None:
                names.extend(sorted((_custom_gradient_names() - before) & own))

    # As tf.Module decorates its methods' functions (with_name_scope): AutoGraph converts the
    # function inside and puts it in traced.__wrapped__ (tf_decorator.rewrap).
    function._decorate(lambda python_function: tf_decorator.make_decorator(python_function, traced))
    weakref.finalize(function, _release_custom_gradients, names).atexit = False
    return function


def autograph_overrides(instance: Any, base: type, names: Sequence[str]) -> None:
    """Converts with AutoGraph the methods of ``names`` that ``instance``'s class overrides.

    :func:`compile_function` leaves AutoGraph off, so a subclass's ``train_step`` with a Python
    ``if`` or ``for`` over tensors would fail to trace. Each override is converted here, as
    ``tf.function`` would convert it, and set on the instance, so every call (the default
    ``train_step`` calling an overridden ``compute_loss`` included) runs the converted code. The
    base class's methods are marked ``do_not_convert``: a ``super()`` call runs them as written.
    An override AutoGraph cannot read (no source) is left as written, as ``tf.function`` does.
    """
    for name in names:
        method = getattr(type(instance), name)
        if method is getattr(base, name):
            continue
        try:
            converted = tf.autograph.to_graph(method)
        except Exception:  # any conversion failure: run it as written, as tf.function does
            continue
        setattr(instance, name, types.MethodType(converted, instance))


def step_output_names(outputs: Any) -> tuple[str, ...]:
    """The names of a step's scalars, from what a trace of it returned.

    Raises:
        ArgumentError: ``bad-step-output`` when the step returns no dict, a name that is not a
            string, or a value that is not one number.
    """
    if not isinstance(outputs, Mapping):
        raise ArgumentError("bad-step-output", f"train_step/test_step must return a dict of scalar tensors such as {{'loss': loss}}, got {type(outputs).__name__}.")
    for name, value in outputs.items():
        # Else a TensorFlow error while the step's values are packed (None, a nested dict, a
        # string) or a Python one where the names are read (an int key).
        if not isinstance(name, str) or not name:
            raise ArgumentError("bad-step-output", f"Step output names must be non-empty strings (the History's and TensorBoard's names), got {name!r}.")
        if not _is_number(value):
            raise ArgumentError("bad-step-output", f"Step output {name!r} is not a number (got {_kind(value)}): steps return one number per name, "
                                                   "such as {'loss': loss, 'accuracy': accuracy}.")
        shape = tf.TensorShape(getattr(value, "shape", None))
        if shape.rank not in (0, None) and shape.num_elements() != 1:
            raise ArgumentError("bad-step-output", f"Step output {name!r} has shape {shape}; steps must return scalars (reduce it first, e.g. tf.reduce_mean).")
    return tuple(outputs)


def _is_number(value: Any) -> bool:
    """A Python or numpy number, or a tensor (variable, array) of floats, integers or booleans."""
    if isinstance(value, numbers.Real):
        return True
    if not (tf.is_tensor(value) or isinstance(value, np.ndarray | np.generic)):
        # A Keras metric has a dtype too: {"accuracy": self.metrics[1]} (its result() meant)
        # passed here and failed as a TypeError while the step's values were packed.
        return False
    try:
        dtype = tf.as_dtype(value.dtype)
    except (AttributeError, TypeError):
        return False
    return dtype.is_floating or dtype.is_integer or dtype.is_bool


def _kind(value: Any) -> str:
    """How an error names a step output that is no number: its type, and a tensor's dtype."""
    if isinstance(value, keras.metrics.Metric):
        return f"the metric {value.name!r}; return its result()"
    dtype = getattr(value, "dtype", None)
    return f"{type(value).__name__} of dtype {dtype}" if dtype is not None else type(value).__name__


def gather_batch(data: Any, rows: tf.Tensor) -> Any:
    """Selects ``rows`` of every tensor in the ``data`` structure."""
    return tf.nest.map_structure(lambda t: tf.gather(t, rows), data)


class CompiledLoop:
    """Compiles ``step`` into multi-step functions for in-memory and streaming data.

    Args:
        step: The step to repeat; must return a flat dict of scalar tensors.
        jit_compile: Compile the in-memory loop (and the streaming step) with XLA.
        stop_on_nonfinite: End a call right after the first step whose ``loss`` is NaN or
            infinite, so training stops at that step rather than at the end of the call.
        strategy: Run each streaming step on every replica of this strategy (``None``: one
            device). Use :meth:`discover_distributed_names` and :meth:`run_streaming` with it.
        xla_fallback: When XLA cannot compile the step, compile it without XLA instead of
            failing (``jit_compile="auto"``); :attr:`xla_failure` then says why.
    """

    def __init__(
        self,
        step: StepFn,
        *,
        jit_compile: bool = False,
        stop_on_nonfinite: bool = False,
        strategy: tf.distribute.Strategy | None = None,
        xla_fallback: bool = False,
    ) -> None:
        self._step = step
        self._strategy = strategy
        self.jit_compile = jit_compile
        self.xla_fallback = xla_fallback
        self.xla_failure: str | None = None
        self.stop_on_nonfinite = stop_on_nonfinite
        self.names: tuple[str, ...] | None = None
        #: In-memory calls: under XLA one per (capacity, whether the epoch has a partial batch),
        #: else one for every call (key None). See _in_memory_function.
        self._in_memory_fns: dict[tuple[int, bool] | None, Callable[..., tuple[tf.Tensor, tf.Tensor]]] = {}
        #: Without XLA: whether the in-memory call has a trace with a partial last batch, which
        #: calls without one then reuse (see run_in_memory).
        self._tail_traced = False
        self._traced_names: tuple[str, ...] | None = None
        self._streaming_fn: Callable[..., tuple[tf.Tensor, tf.Tensor]] | None = None
        self._chunked_fns: dict[str, Callable[..., tuple[tf.Tensor, tf.Tensor]] | None] = {}
        self._batch_spec: Any = None
        self._streaming_xla_checked = False
        #: Whether the last :meth:`run_streaming` call built its function, so traced (and, under
        #: XLA, compiled) the step: its time is no measure of the steps' own.
        self.last_call_built = False

    def discover_names(self, batch_spec: Any, *, batch_rows: int | None = None, tail_rows: int = 0, streaming: bool = False) -> tuple[str, ...]:
        """Traces the step once, without running it, to learn the names of its scalars.

        Under XLA the step is traced alone: an XLA loop is built for the calls' capacity, and
        tracing it here instead measured no faster (XLA's compile dominates the first call).

        Args:
            batch_spec: The ``tf.TensorSpec`` structure of one batch.
            batch_rows: For in-memory data (``batch_spec`` then describes the data tensors, with
                ``None`` rows): the rows of the epoch's full batches. Without XLA the names then
                come from tracing the in-memory call itself, which :meth:`run_in_memory` reuses,
                rather than from a trace of the step that nothing reuses (~0.2 s of a small
                MLP's first fit with statistics).
            tail_rows: The rows of the epoch's partial last batch (0: none).
            streaming: The batches come from a ``tf.data`` iterator of ``batch_spec``. Without
                XLA the names then come from tracing the streaming call, which
                :meth:`run_streaming` reuses (the step traced alone first cost ~0.2 s a loop
                of a small MLP's first fit, its train and test loops each).
        """
        self._batch_spec = batch_spec
        if self.names is None:
            with trainkit_errors_unwrapped():
                if batch_rows is not None and not self.jit_compile:
                    scalar = tf.TensorSpec([], tf.int32)
                    # The partial batch's rows left open: one trace serves data of every size
                    # (each new size traced the whole loop again, 0.4-1.2 s of a small MLP's
                    # evaluate of 2001 rows after 2000, against 8 ms once traced).
                    tail = (tf.TensorSpec([1, None], tf.int32), tf.TensorSpec([], tf.bool)) if tail_rows else (None, None)
                    fn = self._in_memory_function(None, bool(tail_rows))
                    fn.get_concrete_function(batch_spec, tf.TensorSpec([None, batch_rows], tf.int32), scalar, scalar, *tail)
                    self.names = self._traced_names
                    self._tail_traced = bool(tail_rows)
                elif streaming and not self.jit_compile and self._strategy is None:
                    self._streaming_fn = self._build_streaming()
                    self._streaming_fn.get_concrete_function(tf.data.IteratorSpec(batch_spec), tf.TensorSpec([], tf.int32))
                    self.names = self._traced_names
                else:
                    def checked_step(batch: Any) -> Any:
                        logs = self._step(batch)
                        step_output_names(logs)  # inside the trace: tf.function cannot return a dict whose keys do not sort
                        return logs

                    concrete = compile_function(checked_step).get_concrete_function(batch_spec)
                    self.names = step_output_names(concrete.structured_outputs)
        return self.names

    def discover_distributed_names(self, iterator: Any) -> tuple[str, ...]:
        """Like :meth:`discover_names`, for a strategy: traces the streaming call on ``iterator``
        (a distributed iterator), which :meth:`run_streaming` then reuses, rather than the
        replicated step alone and then again in that call."""
        if self.names is None:
            assert self._strategy is not None
            with trainkit_errors_unwrapped():
                self._streaming_fn = self._build_streaming()
                self._streaming_fn.get_concrete_function(iterator, tf.TensorSpec([], tf.int32))
                self.names = self._traced_names
        return self.names

    # -- in-memory ---------------------------------------------------------------------------------
    def _loss_column(self, names: Sequence[str] | None = None) -> int | None:
        """Column of ``loss`` in a buffer row, when calls should stop on a non-finite loss."""
        names = self.names if names is None else names
        if not self.stop_on_nonfinite or names is None or "loss" not in names:
            return None
        return 1 + tuple(names).index("loss")

    def _in_memory_function(self, capacity: int | None, tail: bool) -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
        """The in-memory call: one per (capacity, tail) under XLA, one for every call without.

        XLA compiles a buffer of fixed ``capacity``. Without XLA the buffer holds the call's own
        steps, so one function serves every call; tf.function still traces it once per batch
        shape (full batches, and the partial last batch with them or alone).
        """
        key = (capacity, tail) if self.jit_compile else None
        fn = self._in_memory_fns.get(key)
        if fn is None:
            fn = self._in_memory_fns[key] = self._build_in_memory(capacity if self.jit_compile else None)
        return fn

    def _build_in_memory(self, capacity: int | None) -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
        step = self._step

        def row_of(batch: Any) -> tf.Tensor:
            logs = step(batch)
            # Learnt here when this trace discovers them (see discover_names).
            names = self._traced_names = self.names if self.names is not None else step_output_names(logs)
            return _flatten_logs(logs, names, batch)

        def run(data: Any, indices: tf.Tensor, start: tf.Tensor, num_steps: tf.Tensor, tail_indices: tf.Tensor | None = None,
                run_tail: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
            size = (num_steps if capacity is None else capacity) + int(tail_indices is not None)
            width = None if self.names is None else [len(self.names) + 1]  # else inferred from the step's rows
            buffer = tf.TensorArray(tf.float32, size=size, element_shape=width)

            def body(i: tf.Tensor, finite: tf.Tensor, buffer: tf.TensorArray) -> tuple[tf.Tensor, tf.Tensor, tf.TensorArray]:
                # tf.gather, not indices[start + i]: XLA would take a slice's begin as a
                # compile-time constant and recompile for every new start.
                batch = gather_batch(data, tf.gather(indices, start + i))
                row = row_of(batch)
                loss_column = self._loss_column(self._traced_names)
                if loss_column is not None:
                    finite = tf.math.is_finite(row[loss_column])
                return i + 1, finite, buffer.write(i, row)

            count, finite, buffer = tf.while_loop(lambda i, finite, _: (i < num_steps) & finite, body, (tf.constant(0), tf.constant(True), buffer))
            if tail_indices is not None:
                # The epoch's partial last batch (its own shape), after the full ones: a loop of
                # at most one step, skipped when a non-finite loss ended the loop above.
                def tail_body(i: tf.Tensor, buffer: tf.TensorArray) -> tuple[tf.Tensor, tf.TensorArray]:
                    return i + 1, buffer.write(i, row_of(gather_batch(data, tail_indices[0])))

                count, buffer = tf.while_loop(lambda i, _: (i == num_steps) & finite & run_tail, tail_body, (count, buffer), maximum_iterations=1)
            return buffer.stack(), count

        # Without XLA, a batch shape no trace covers (data with no partial batch before, or
        # smaller than one batch) is traced with its rows relaxed, so at most once more. XLA
        # compiles each shape anyway, and a call's fixed capacity is what keeps its compiles few.
        return compile_function(run, jit_compile=self.jit_compile, reduce_retracing=not self.jit_compile)

    def run_in_memory(self, data: Any, indices: tf.Tensor, start: int, num_steps: int, capacity: int, tail: tf.Tensor | None = None,
                      run_tail: bool = True) -> StepOutputs:
        """Runs the batches ``indices[start : start + num_steps]`` (fewer if a loss goes non-finite).

        Args:
            data: Structure of tensors holding the whole dataset (e.g. ``(x, y)``).
            indices: ``[batches, B]`` int32 row indices, one row per batch.
            start: First batch to run.
            num_steps: Batches to run; at most ``capacity``.
            capacity: Size of an XLA call's output buffer. Keep it fixed for a fit: a new value
                compiles a new XLA function, while any ``num_steps <= capacity`` reuses it.
                (Without XLA the buffer is sized to the call.)
            tail: ``[1, r]`` row indices of one more, smaller batch to run after the others in
                the same call (the epoch's partial last batch): one call an epoch instead of two.
            run_tail: Whether to run ``tail`` in this call. An epoch's calls before the last pass
                its tail with ``False``: they then share the last call's compiled function, so
                the first epoch compiles the step once, not once without the tail and once with it.
        """
        if num_steps > capacity:
            raise ValueError(f"num_steps={num_steps} exceeds capacity={capacity}")
        if tail is None and self._tail_traced and not self.jit_compile:
            # Data with no partial batch after data with one (a fit with validation_split after
            # a fit without, an evaluate of 10,240 rows after one of 10,000) takes the trace that
            # has the tail, its tail not run: without it the whole loop was traced again (a
            # small MLP's step ~0.3 s, an LSTM's ~1.5 s). Its stand-in rows are never gathered.
            tail, run_tail = tf.zeros([1, 1], tf.int32), False
        fn = self._in_memory_function(capacity, tail is not None)
        args = (data, indices, tf.constant(start, tf.int32), tf.constant(num_steps, tf.int32)) + ((tail, tf.constant(run_tail)) if tail is not None else ())
        try:
            with workers_turn():  # the call releases the GIL: background work runs meanwhile
                buffer, count = fn(*args)
            self._tail_traced = self._tail_traced or (tail is not None and not self.jit_compile)
        except tf.errors.InvalidArgumentError as err:
            if not self._fall_back_from_xla(err):
                raise
            return self.run_in_memory(data, indices, start, num_steps, capacity, tail, run_tail)
        return self._unpack(buffer.numpy(), int(count))

    def _fall_back_from_xla(self, err: Exception) -> bool:
        """Turns XLA off after a compile failure, when allowed; True if the call should be retried.

        XLA compiles the whole function before running any of it, so nothing ran and a retry
        without XLA starts from the same state.

        Raises:
            ArgumentError: ``jit-unsupported`` when XLA cannot compile the step and falling back
                is not allowed (``jit_compile=True``), instead of TensorFlow's traceback.
        """
        message = str(err)
        if not (self.jit_compile and _is_xla_compile_failure(message)):
            return False
        if not self.xla_fallback:
            _refuse_jit(err)
        self.jit_compile = False
        self.xla_failure = message.splitlines()[0]
        self._in_memory_fns.clear()
        self._tail_traced = False
        self._streaming_fn = None
        self._chunked_fns.clear()
        return True

    # -- streaming ---------------------------------------------------------------------------------
    def _build_streaming(self) -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
        """The streaming call: a ``tf.while_loop`` that pulls a batch and runs the step until
        ``capacity`` steps ran, the iterator ran dry, or (``stop_on_nonfinite``) a loss was not finite.

        Written with ``tf.while_loop`` and ``tf.cond`` rather than AutoGraph's ``for``/``break``
        (the same ops: the step ran in a ``tf.cond`` on ``has_value`` there too): converting this
        function took ~0.6 s of a small MLP's first fit on a dataset, and its test loop's as much.
        Without XLA, a trace of this call is what learns the step's names when they are not known
        yet (see :meth:`discover_names`), so the step is traced once, not once more to name them.
        """
        width: list[int] = [] if self.names is None else [len(self.names) + 1]  # else learnt by the trace
        step = compile_function(self._step, jit_compile=True) if self.jit_compile else self._step
        replicated = None
        if self._strategy is not None:
            from trainkit import distribute

            replicated = distribute.replicated_step(self._strategy, self._step)

        def step_row(iterator_value: Any) -> tuple[tf.Tensor, tf.Tensor]:
            batch = iterator_value.get_value()
            if replicated is None:
                logs = step(batch)
                names = self._traced_names = self.names if self.names is not None else step_output_names(logs)
                row = _flatten_logs(logs, names, batch)
            else:
                logs, rows = replicated(batch)  # (its replica step checks the step's outputs)
                names = self._traced_names = self.names if self.names is not None else tuple(logs)
                row = _pack_row(logs, names, rows)
            width[:] = [len(names) + 1]
            loss_column = self._loss_column(names)
            return row, tf.math.is_finite(row[loss_column]) if loss_column is not None else tf.constant(True)

        def run(iterator: Any, capacity: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            def body(count: tf.Tensor, go: tf.Tensor, buffer: tf.TensorArray) -> tuple[tf.Tensor, tf.Tensor, tf.TensorArray]:
                optional = iterator.get_next_as_optional()
                has_value = optional.has_value()
                # tf.cond traces its true branch first: the row's width is known for the other.
                row, finite = tf.cond(has_value, lambda: step_row(optional), lambda: (tf.zeros(width), tf.constant(False)))
                # Without a batch the zero row goes past ``count``, where nothing reads it.
                return count + tf.cast(has_value, tf.int32), has_value & finite, buffer.write(count, row)

            buffer = tf.TensorArray(tf.float32, size=capacity, element_shape=width or None)
            count, _, buffer = tf.while_loop(lambda count, go, _: go & (count < capacity), body, (tf.constant(0), tf.constant(True), buffer))
            return buffer.stack(), count  # (the loop gives it the width its body wrote: unwritten rows stack as zeros)

        return compile_function(run, reduce_retracing=False)

    def _chunkable(self, iterator: Any) -> bool:
        """Whether the streaming call can stack batches and run them in one XLA loop: an XLA step,
        one device, and dense tensors of known rank."""
        if not self.jit_compile or self._strategy is not None:
            return False
        try:
            specs = tf.nest.flatten(iterator.element_spec)
        except (AttributeError, TypeError):
            return False
        return _STREAM_CHUNK > 1 and all(type(spec) is tf.TensorSpec and spec.shape.rank is not None and spec.dtype != tf.string for spec in specs)

    def _build_chunked_streaming(self, element_spec: Any, chunk: int) -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
        """The streaming call for an XLA step: batches are pulled into a stack of up to
        ``chunk`` equally shaped batches, and each stack runs in one XLA-compiled
        ``tf.while_loop`` (as the in-memory path runs), instead of one XLA launch per step.

        The stack is padded to ``chunk`` batches so every stack of one batch shape reuses
        one compilation; a batch of another shape (the partial last batch) starts a new stack.
        """
        names = self.names
        assert names is not None
        width = len(names) + 1
        step = self._step
        loss_column = self._loss_column()
        specs = tf.nest.flatten(element_spec)

        def run_chunk(stacked: list[tf.Tensor], num_steps: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            buffer = tf.TensorArray(tf.float32, size=chunk, element_shape=[width])

            def body(i: tf.Tensor, finite: tf.Tensor, buffer: tf.TensorArray) -> tuple[tf.Tensor, tf.Tensor, tf.TensorArray]:
                batch = tf.nest.pack_sequence_as(element_spec, [tf.gather(t, i) for t in stacked])
                row = _flatten_logs(step(batch), names, batch)
                if loss_column is not None:
                    finite = tf.math.is_finite(row[loss_column])
                return i + 1, finite, buffer.write(i, row)

            count, finite, buffer = tf.while_loop(lambda i, finite, _: (i < num_steps) & finite, body, (tf.constant(0), tf.constant(True), buffer))
            return buffer.stack(), count, finite

        chunk_fn = compile_function(run_chunk, jit_compile=True, reduce_retracing=False)
        step_fn = compile_function(step, jit_compile=True)

        def fresh() -> list[tf.TensorArray]:
            return [tf.TensorArray(spec.dtype, size=0, dynamic_size=True, element_shape=spec.shape) for spec in specs]

        def run_one(stacks: list[tf.TensorArray]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            # A stack of one batch runs as one step: padded to a stack it cost a whole stack of
            # zeros (batch shapes that change every batch made every stack one batch).
            batch = tf.nest.pack_sequence_as(element_spec, [ta.read(0) for ta in stacks])
            row = _flatten_logs(step_fn(batch), names, batch)
            finite = tf.math.is_finite(row[loss_column]) if loss_column is not None else tf.constant(True)
            return row[None], tf.constant(1), finite

        def run_stack(stacks: list[tf.TensorArray], n: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            stacked = [tf.pad(ta.stack(), [[0, chunk - n]] + [[0, 0]] * spec.shape.rank) for ta, spec in zip(stacks, specs, strict=True)]
            return chunk_fn(stacked, n)

        def flush(buffer: tf.TensorArray, count: tf.Tensor, stacks: list[tf.TensorArray], n: tf.Tensor) -> tuple[tf.TensorArray, tf.Tensor, tf.Tensor]:
            rows, ran, finite = tf.cond(n == 1, lambda: run_one(stacks), lambda: run_stack(stacks, n))
            buffer = buffer.scatter(count + tf.range(ran), rows[:ran])
            return buffer, count + ran, tf.logical_not(finite)

        def flushed(buffer: tf.TensorArray, count: tf.Tensor, stacks: list[tf.TensorArray], n: tf.Tensor) -> tuple[Any, ...]:
            """``(buffer, count, stopped, stacks, n)`` after running the stack: a fresh, empty one."""
            return (*flush(buffer, count, stacks, n), fresh(), tf.constant(0))

        def run(iterator: Any, capacity: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            # tf.while_loop and tf.cond, not AutoGraph's while/if/break (the same ops): converting
            # this function took ~1.4 s of an XLA fit's first call on a dataset.
            def body(pulled: tf.Tensor, stopped: tf.Tensor, buffer: tf.TensorArray, count: tf.Tensor, stacks: list[tf.TensorArray], n: tf.Tensor,
                     shapes: list[tf.Tensor], more: tf.Tensor) -> tuple[Any, ...]:
                optional = iterator.get_next_as_optional()

                def pulled_one() -> tuple[Any, ...]:
                    flat = tf.nest.flatten(optional.get_value())
                    new_shapes = [tf.shape(t) for t in flat]
                    same = tf.reduce_all([tf.reduce_all(a == b) for a, b in zip(new_shapes, shapes, strict=True)])
                    # A batch of another shape: the stack so far runs first (and may stop the call).
                    state = tf.cond((n > 0) & tf.logical_not(same), lambda: flushed(buffer, count, stacks, n), lambda: (buffer, count, tf.constant(False), stacks, n))

                    def push(buffer: tf.TensorArray, count: tf.Tensor, stopped: tf.Tensor, stacks: list[tf.TensorArray], n: tf.Tensor) -> tuple[Any, ...]:
                        stacks = [ta.write(n, t) for ta, t in zip(stacks, flat, strict=True)]
                        return tf.cond(n + 1 == chunk, lambda: flushed(buffer, count, stacks, n + 1), lambda: (buffer, count, stopped, stacks, n + 1))

                    buffer_, count_, stopped_, stacks_, n_ = tf.cond(state[2], lambda: state, lambda: push(*state))
                    return pulled + 1, stopped_, buffer_, count_, stacks_, n_, new_shapes, tf.constant(True)

                pulled, stopped, buffer, count, stacks, n, shapes, more = tf.cond(
                    optional.has_value(), pulled_one, lambda: (pulled, stopped, buffer, count, stacks, n, shapes, tf.constant(False)))
                # The iterator ran dry: the loop ends as if stopped, and the stack left runs below.
                return pulled, stopped, buffer, count, stacks, n, shapes, more

            state = (tf.constant(0), tf.constant(False), tf.TensorArray(tf.float32, size=capacity, element_shape=[width]), tf.constant(0), fresh(),
                     tf.constant(0), [tf.zeros([spec.shape.rank], tf.int32) for spec in specs], tf.constant(True))
            _, stopped, buffer, count, stacks, n, _, _ = tf.while_loop(
                lambda pulled, stopped, *rest: (pulled < capacity) & tf.logical_not(stopped) & rest[-1], body, state)
            buffer, count, _ = tf.cond((n > 0) & tf.logical_not(stopped), lambda: flush(buffer, count, stacks, n), lambda: (buffer, count, stopped))
            return buffer.stack(), count

        return compile_function(run, reduce_retracing=False)

    def run_streaming(self, iterator: Any, capacity: int, batch_bytes: Callable[[], int] | None = None) -> StepOutputs:
        """Runs up to ``capacity`` steps on batches pulled from ``iterator``.

        Returns fewer steps (possibly none) when the iterator is exhausted. ``batch_bytes()``,
        asked once per element spec, sizes the stacks of an XLA step (see :data:`STACK_BYTES`);
        without it they hold ``_STREAM_CHUNK`` batches.
        """
        if self.jit_compile and self.xla_fallback and self._strategy is None and not self._streaming_xla_checked:
            self._streaming_xla_checked = True
            self._check_streaming_xla()
        fn = None
        self.last_call_built = False
        if self._chunkable(iterator):
            # One function per element spec: the stacks' dtypes and ranks are fixed when it is built.
            key = repr(iterator.element_spec)
            if key not in self._chunked_fns:
                self.last_call_built = True
                chunk = _STREAM_CHUNK if batch_bytes is None else min(_STREAM_CHUNK, STACK_BYTES // max(1, batch_bytes()))
                self._chunked_fns[key] = self._build_chunked_streaming(iterator.element_spec, chunk) if chunk > 1 else None
            fn = self._chunked_fns[key]
        if fn is None:
            if self._streaming_fn is None:
                self.last_call_built = True
                self._streaming_fn = self._build_streaming()
            fn = self._streaming_fn
        try:
            with workers_turn():
                # A tensor, not a Python int: calls of every size (the epoch's remainder, a call cut
                # short where histograms are due) share one trace.
                buffer, count = fn(iterator, tf.constant(capacity, tf.int32))
        except tf.errors.InvalidArgumentError as err:
            # The batches pulled are gone, so no retry: jit_compile="auto" checked the step first.
            if self.jit_compile and not self.xla_fallback and _is_xla_compile_failure(str(err)):
                _refuse_jit(err)
            from trainkit import distribute

            coded = distribute.collective_shape_error(self._strategy, err)
            if coded is not None:
                raise coded from None
            raise
        return self._unpack(buffer.numpy(), int(count))

    def _check_streaming_xla(self) -> None:
        """Turns XLA off, before any batch is pulled, when it cannot compile the streamed step.

        In-memory, XLA compiles the whole call before it runs and a failed call is retried
        (:meth:`_fall_back_from_xla`); a streamed step compiles only when its first batch has
        been pulled from the iterator, which a retry would miss. So the step is compiled to HLO
        here first, without running, for batches of one row (the ops, not the sizes, decide).
        """
        if self._batch_spec is None:
            return
        specs = tf.nest.flatten(self._batch_spec)
        if not all(isinstance(s, tf.TensorSpec) and s.shape.rank is not None and (s.dtype.is_floating or s.dtype.is_integer or s.dtype.is_bool)
                   for s in specs):
            return  # text, ragged or unknown ranks: the step's first call says what it says
        # A batch of zeros, not specs: the compiler IR of a nested structure of specs is refused.
        batch = tf.nest.map_structure(lambda s: tf.zeros([1 if d is None else d for d in s.shape], s.dtype), self._batch_spec)
        try:
            with trainkit_errors_unwrapped():
                compile_function(self._step, jit_compile=True).experimental_get_compiler_ir(batch)(stage="hlo")
        except TrainkitError:
            raise
        except (ValueError, tf.errors.OpError) as err:
            self.jit_compile = False
            self.xla_failure = str(err).splitlines()[0]

    def _unpack(self, buffer: np.ndarray, count: int) -> StepOutputs:
        assert self.names is not None
        rows = buffer[:count]
        if count < len(buffer):
            # A copy, not a view: the step table keeps the values of 10k steps, and a view of a
            # call's whole buffer (its capacity, up to 1024 rows: a streamed epoch of unknown
            # length, or one cut short) kept up to 8x the rows it ran.
            rows = rows.copy()
        return without_empty_batches(StepOutputs(names=self.names, values=rows[:, 1:], batch_sizes=rows[:, 0].astype(np.int64)))


def without_empty_batches(outputs: StepOutputs) -> StepOutputs:
    """``outputs`` with the statistics a batch of no rows cannot have made NaN for such steps.

    A dataset may yield empty batches (a ``filter`` that emptied one, a bad split): every ReLU
    unit is then active on none of its rows, and ``dead_fraction`` read 1 (a healthy MLP with 13
    empty batches of 20 read 65% dead every epoch: a false dead-relu). NaN, as their mean and std
    already are, leaves those steps out of the epoch means, the TensorBoard read-back's too. Here
    on the host, after the call: the compiled step does nothing more.
    """
    empty = outputs.batch_sizes == 0
    if not empty.any():
        return outputs
    columns = counted_over_rows(outputs.names)
    if not columns:
        return outputs
    values = outputs.values.copy()  # the call's buffer may be read-only
    values[np.ix_(empty, columns)] = np.nan
    return dataclasses.replace(outputs, values=values)


def _is_xla_compile_failure(message: str) -> bool:
    """Whether a TensorFlow error's message says XLA could not compile a function."""
    return "XLA" in message and "compile" in message


def _refuse_jit(err: Exception) -> None:
    """Raises ``jit-unsupported`` for ``jit_compile=True`` on a step XLA cannot compile, naming
    XLA's reason (the line of TensorFlow's message that mentions XLA)."""
    lines = str(err).splitlines()
    reason = next((line for line in lines if "XLA" in line), lines[0] if lines else "")
    # "... on XLA_CPU_JIT: EagerPyFunc (No registered 'EagerPyFunc' OpKernel ... {{node ...}}": the op is the news.
    reason = reason.split(" (No registered", 1)[0].split("{{node", 1)[0].strip()
    raise ArgumentError("jit-unsupported", f"jit_compile=True, but XLA cannot compile the training step: {reason}. Pass jit_compile=False, "
                                           "or \"auto\", which falls back to no XLA for such a model.") from err


def epoch_batches(order: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Splits an epoch's row order into full batches and the partial last batch.

    Args:
        order: The epoch's row order (a permutation when shuffling).
        batch_size: Rows per batch.

    Returns:
        ``([full, B] indices of the full batches, [1, r] indices of the partial last batch or
        None)``. The partial batch runs as a batch of its own (its own trace of the step, in the
        call that ends the epoch: see ``tail`` of :meth:`CompiledLoop.run_in_memory`), so every
        row is seen exactly once and no padding distorts the loss.
    """
    full = len(order) // batch_size
    full_batches = order[: full * batch_size].reshape(full, batch_size).astype(np.int32)
    remainder = order[full * batch_size :]
    return full_batches, (remainder.reshape(1, -1).astype(np.int32) if remainder.size else None)
