"""What ``fit``, ``evaluate`` and ``predict`` accept as data, converted or refused with a reason.

Numpy arrays and what converts to them (lists, tensors, pandas objects) become arrays
(:func:`as_array`), a ``keras.utils.PyDataset`` a ``tf.data.Dataset`` of its batches
(:func:`pydataset_batches`); a scipy sparse matrix, ragged rows, text for an input that takes
numbers (numbers or missing values for one that takes text), and one-pass iterators are refused
with a :class:`~trainkit.errors.DataError` that says what to pass instead. :mod:`trainkit.sources` builds the training sources from what is accepted.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import itertools
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from trainkit.errors import DataError


def is_iterator(x: Any) -> bool:
    """Whether ``x`` is a generator or another iterator (readable once), not data."""
    return not isinstance(x, tf.data.Dataset | np.ndarray | Mapping | list | tuple) and hasattr(x, "__next__")


def accepted_input(x: Any, what: str = "x", shuffle_seed: int | None = None, *, with_targets: bool = True) -> Any:
    """``x`` as ``fit`` and ``evaluate`` go on with it.

    A ``keras.utils.PyDataset`` becomes a ``tf.data.Dataset`` of its batches (streamed, as
    ``model.fit`` streams it; ``shuffle_seed``: in a new order each pass, as ``model.fit``
    shuffles them); a generator or any other one-pass iterator is refused: an epoch after the
    first would find it empty. ``with_targets``: batches must hold targets (``fit``, ``evaluate``).

    Raises:
        DataError: ``unsupported-input`` for an iterator (and, once read, for a PyDataset whose
            ``len()`` fell: :func:`pydataset_batches`); ``missing-targets`` for a PyDataset
            whose batches hold inputs only when targets are needed.
    """
    if isinstance(x, keras.utils.PyDataset):
        dataset = pydataset_batches(x, shuffle_seed)
        parts = dataset.element_spec
        if with_targets and (not isinstance(parts, tuple) or len(parts) < 2):
            raise DataError("missing-targets", f"The {type(x).__name__}'s batches hold inputs only; training and evaluation need targets: "
                                               "return (x, y) or (x, y, sample_weight) from its __getitem__.")
        return dataset
    if is_iterator(x):
        raise DataError("unsupported-input", f"{what} is a {type(x).__name__}, which can be read only once, so there would be nothing left for "
                                             "a second epoch. Pass a tf.data.Dataset.from_generator(make_batches, output_signature=...) "
                                             "with a function that starts the generator again, a keras.utils.PyDataset, or numpy arrays.")
    if isinstance(x, tf.distribute.DistributedDataset):
        # model.fit takes one; "an object that can only be iterated, not data" said nothing of the fix.
        raise DataError("unsupported-input", f"{what} is a distributed dataset (strategy.experimental_distribute_dataset): pass the "
                                             "tf.data.Dataset itself, and the Trainer's strategy distributes it (Trainer(..., strategy=strategy)).")
    if _not_data(x):
        # np.asarray makes it one object: "needs targets y when x is a numpy array", or with y
        # "x holds values that are not numbers", advice for text.
        kind = "function" if callable(x) else f"{type(x).__name__} object that can only be iterated"
        raise DataError("unsupported-input", f"{what} is a {kind} ({x!r:.60}), not data. Pass numpy arrays, a batched tf.data.Dataset "
                                             "(tf.data.Dataset.from_generator(make_batches, output_signature=...) for a generator function) "
                                             "or a keras.utils.PyDataset.")
    return x


def _not_data(x: Any) -> bool:
    """Whether ``x`` is a function (a generator function not called) or an object that can only
    be iterated (a class with ``__iter__`` alone), neither of which converts to an array."""
    if isinstance(x, tf.data.Dataset | np.ndarray | Mapping | list | tuple | str | bytes) or tf.is_tensor(x) or hasattr(x, "__array__"):
        return False
    return callable(x) or (hasattr(x, "__iter__") and not hasattr(x, "__len__") and not hasattr(x, "__getitem__"))


#: The last exception a PyDataset raised while tf.data read it (on a thread of tf.data's own), by
#: the thread that made the dataset (the one calling fit): kept so that the OpError TensorFlow wraps
#: it in can give way to it (:func:`reraises_source_errors`), and two trainers fitting in two
#: threads do not take each other's.
_source_errors: dict[int, Exception] = {}
#: How many wrapped calls each thread has ended: a pass of a PyDataset records its error only while
#: the call it began in runs. tf.data reads ahead: after a fit of 3 epochs of 5 steps returned, its
#: dropped iterator's reader met a failing batch 20 and kept that error (with the dataset in its
#: traceback) under the thread, for a later call's unrelated failure to be taken for it.
_calls_ended: dict[int, int] = {}
_call_depth = threading.local()


def forget_source_error() -> None:
    """Drops the exception a PyDataset raised for this thread's dataset, for a reader that handled
    it (:class:`~trainkit.checks.data_sampling.FurtherRows`): kept, its traceback held the dataset."""
    _source_errors.pop(threading.get_ident(), None)


def reraises_source_errors(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps ``fit``/``evaluate``/``predict`` so that an exception a PyDataset raised in a batch
    reaches the caller as itself (a ``ValueError`` of the user's, a ``DataError`` with its code),
    not inside TensorFlow's ``InvalidArgumentError`` "Graph execution error" of the generator op."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth = getattr(_call_depth, "value", 0)
        _call_depth.value = depth + 1
        try:
            return method(*args, **kwargs)
        except tf.errors.OpError as err:
            original = _source_errors.pop(threading.get_ident(), None)
            if original is None:
                model = getattr(args[0], "model", None) if args else None
                data = args[1] if len(args) > 1 else kwargs.get("x")
                refusal = (_ids_out_of_table(err, model, method.__name__)
                           or _class_ids_out_of_range(err, model, method.__name__, data if isinstance(data, tf.data.Dataset) else None))
                if refusal is not None:
                    raise refusal from None
                raise
            text = str(original)
            if f"{type(original).__name__}: {text.splitlines()[0] if text else ''}" not in err.message:
                raise  # another failure (the one kept was raised by a batch read eagerly, long gone)
            raise original from None
        finally:
            _call_depth.value = depth
            if depth == 0:  # the outermost call (fit's own evaluate calls are inside it) has ended
                owner = threading.get_ident()
                _calls_ended[owner] = _calls_ended.get(owner, 0) + 1
                _source_errors.pop(owner, None)

    return wrapper


#: TensorFlow's words on CPU for an id outside a lookup's table (a GPU reads a row of zeros instead).
_OUT_OF_TABLE = re.compile(r"indices\[[\d,]+\] = (-?\d+) is not in \[0, (\d+)\)")
#: The op that looked it up, under its layer's name scope.
_LOOKUP_NODE = re.compile(r"([^/\s{}]+)/GatherV2")


#: What each wrapped method was doing when a batch failed, and what its checks read before it
#: (predict checks nothing: "during training ... the checks read a dataset's first batches" was
#: told of an id in a numpy array to predict).
_READ_DURING = {
    "fit": ("read during training", " The checks before the first step read only a dataset's first batches."),
    "evaluate": ("read during evaluation", " The checks before it read only a dataset's first batches."),
    "predict": ("to predict", ""),
}


def _ids_out_of_table(err: tf.errors.OpError, model: Any, method: str = "fit") -> DataError | None:
    """``embedding-ids`` for TensorFlow's error on an id outside an Embedding's table, ``None``
    for any other error (``method``: the Trainer method that failed).

    The data checks read a dataset's first batches only: an id past the table in a later batch
    failed the step with TensorFlow's "Graph execution error", "indices[28,3] = 205 is not in
    [0, 200)", under trainkit's own name scopes (``sequential_trainkit_probe_1/embedding_1``).
    """
    found = _OUT_OF_TABLE.search(err.message) if isinstance(err, tf.errors.InvalidArgumentError) else None
    if found is None or not isinstance(model, keras.Model):
        return None
    from trainkit.checks.model_inspect import iter_layers

    embeddings = {layer.name for layer in iter_layers(model) if isinstance(layer, keras.layers.Embedding)}
    # A name scope entered twice in one graph is made unique with a suffix: embedding/ reads embedding_1/.
    scopes = _LOOKUP_NODE.findall(err.message)
    layer = next((name for name in scopes if name in embeddings), None) or next(
        (base for name in scopes if (base := re.sub(r"_\d+$", "", name)) in embeddings), None)
    if layer is None:
        return None
    value, rows = int(found.group(1)), int(found.group(2))
    during, checked = _READ_DURING.get(method, _READ_DURING["fit"])
    if value < 0:
        # Keras counts a negative id from the table's end (-1: the last row) before the lookup, so
        # TensorFlow names what is left of one below -rows (-6 for 5 rows reads -1); no larger
        # table helps, and "Use Embedding(input_dim=...) larger" was the advice.
        return DataError("embedding-ids", f"A batch {during} holds an id below -{rows}, which the Embedding '{layer}' ({rows} rows, "
                                          f"ids 0..{rows - 1}) cannot look up: Keras reads a negative id from the table's end, -1 as its "
                                          f"last row, and this one is past even that.{checked} Map the ids to 0..{rows - 1} (keep 0 for "
                                          "padding if the model masks it, and shift real ids up by one).")
    return DataError("embedding-ids", f"A batch {during} holds id {value}, but the Embedding '{layer}' has {rows} rows "
                                      f"(ids 0..{rows - 1}): an id outside them has no row.{checked} Use Embedding(input_dim=...) larger than every id, or map the ids to "
                                      f"0..{rows - 1} (keep 0 for padding if the model masks it).")


#: TensorFlow's words on CPU for a class id outside a sparse cross-entropy's units.
_OUT_OF_CLASSES = re.compile(r"Received a label value of (-?\d+) which is outside the valid range of \[0, (\d+)\)")


def _class_ids_out_of_range(err: tf.errors.OpError, model: Any, method: str = "fit", dataset: tf.data.Dataset | None = None) -> DataError | None:
    """``label-format`` for TensorFlow's error on a class id a sparse cross-entropy has no unit
    for, ``None`` for any other error (``method``: the Trainer method that failed; ``dataset``:
    the ``tf.data.Dataset`` it read, whose labels numpy's ``np.unique`` cannot reach, or ``None``).

    The data checks read a dataset's first batches only: a label 7 for a 5-unit softmax in a later
    batch failed the step with TensorFlow's "Graph execution error ... Received a label value of 7
    which is outside the valid range of [0, 5)", where numpy labels are refused before the first step.
    """
    found = _OUT_OF_CLASSES.search(err.message) if isinstance(err, tf.errors.InvalidArgumentError) else None
    if found is None or not isinstance(model, keras.Model):
        return None
    value, units = int(found.group(1)), int(found.group(2))
    from trainkit.checks.data_context import entry_map
    from trainkit.checks.model_inspect import find_outputs

    # The error names no output; with one output of that many units it is that one.
    outputs = find_outputs(model)
    heads = [output for output in outputs if output.units == units]
    where = f"the output layer '{heads[0].layer}'" if len(heads) == 1 else "the output"
    during, checked = _READ_DURING.get(method, _READ_DURING["fit"])
    # A dataset's labels take no np.unique (the label-format the checks give a dataset says so).
    remap = ("where the dataset is made, the same for every split: lookup = keras.layers.IntegerLookup(vocabulary=[every class "
             f"id, in order], num_oov_indices=0), then {entry_map(_target_entry(dataset, outputs, heads), 'lookup(y)')}." if dataset is not None else
             ": classes, y = np.unique(y, return_inverse=True) over every split's labels together.")
    return DataError("label-format", f"A batch {during} holds class id {value}, but {where} has {units} units (ids 0..{units - 1}): "
                                     f"an id outside that range has no unit, and the sparse cross-entropy cannot score it.{checked} "
                                     f"Use Dense({value + 1}) if there are {value + 1} classes, or map the labels to 0..{units - 1}"
                                     + (" " if dataset else "") + remap
                                     if value >= units else
                                     f"A batch {during} holds class id {value}, but {where} takes ids 0..{units - 1}: a negative "
                                     f"label has no unit, and the sparse cross-entropy cannot score it.{checked} Map the labels to "
                                     f"0..{units - 1}" + (" " if dataset else "") + remap)


def _target_entry(dataset: tf.data.Dataset, outputs: Sequence[Any], heads: Sequence[Any]) -> str | int | None:
    """Where the one output of ``heads`` sits in ``dataset``'s targets: a key of a dict of
    targets, an index of a tuple of them, or ``None`` for targets that are one tensor (or an
    output that cannot be told). The map of the whole ``y`` raised a TypeError on a dict."""
    spec = dataset.element_spec
    targets = spec[1] if isinstance(spec, tuple) and len(spec) > 1 else None
    if len(heads) != 1 or not isinstance(targets, Mapping | tuple | list):
        return None
    head = heads[0]
    if isinstance(targets, Mapping):
        keys = [str(k) for k in targets]
        if len(keys) == 1:
            return keys[0]
        return next((k for k in (head.key, head.layer, head.name) if k in keys), None)
    return outputs.index(head) if len(targets) == len(outputs) > 1 else None


def _refuse_missing_text(batch: Any, data: keras.utils.PyDataset, index: int) -> None:
    """Refuses a batch whose text input holds ``None`` or NaN (pandas' missing values): tf.data
    failed on it with an ``InternalError``, "Unsupported object type NoneType"."""
    inputs = batch[0] if isinstance(batch, tuple) else batch
    for value in tf.nest.flatten(inputs):
        if not isinstance(value, np.ndarray) or value.dtype.kind != "O":
            continue
        flat = value.ravel()
        if any(isinstance(v, str | bytes) for v in flat) and any(v is None or (isinstance(v, float) and math.isnan(v)) for v in flat):
            raise DataError("unsupported-input", f"Batch {index} of the {type(data).__name__} holds missing values (None or NaN) among its "
                                                 "text inputs: TensorFlow makes no string tensor of them. Fill them in __getitem__ first "
                                                 "(texts = np.where(pd.isna(texts), '', texts)).")


def pydataset_batches(data: keras.utils.PyDataset, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """A ``keras.utils.PyDataset``'s batches as a ``tf.data.Dataset`` (one pass an epoch).

    Args:
        data: The PyDataset.
        shuffle_seed: Read the batches in a new order each pass, the k-th pass's order seeded
            by ``(shuffle_seed, k)``, as ``model.fit(shuffle=True)`` reads them; ``None``: in
            order. (A resumed run starts the passes again, so it is not exact, as with a
            reshuffling ``tf.data`` pipeline.)

    The element spec comes from the first, second and last batches (an axis whose size differs
    between them is ``None``; float64 is read as float32, as Keras does, unless
    ``keras.backend.floatx()`` is float64); each
    pass starts with the dataset's ``on_epoch_begin()`` and ends with its ``on_epoch_end()`` (unless
    :func:`epoch_hooks` hands them to the fit's epochs), and
    reads as many batches as ``len()`` gave here (as ``model.fit`` sizes its epochs; a pass that
    finds ``len()`` smaller raises ``unsupported-input``). One whose ``num_batches`` is ``None``
    (Keras's PyDataset that never ends) yields batches 0, 1, 2... forever, in order. One with
    ``workers`` > 1, finite or not, is read on that many threads, up to
    ``max_queue_size`` batches ahead (threads for ``use_multiprocessing=True`` too: see
    :func:`_read_ahead`).
    """

    owner = threading.get_ident()

    def read(index: int) -> Any:
        batch = data[index]
        batch = tuple(batch) if isinstance(batch, list) else batch
        _refuse_missing_text(batch, data, index)
        return batch

    def recorded(batches: Iterable[Any]) -> Iterator[Any]:
        # The error that ends a pass, on tf.data's thread, for fit to raise in place of
        # TensorFlow's. Kept here, not where a batch is read: a worker reading ahead (batch 8,
        # failing as batch 7 did) overwrote the error of the batch that ended the pass, and
        # fit raised TensorFlow's wrapper of it instead.
        began_after = _calls_ended.get(owner, 0)
        try:
            yield from batches
        except Exception as err:
            if _calls_ended.get(owner, 0) == began_after:  # not a read-ahead past a call that ended
                _source_errors[owner] = err
            raise

    def spec(*values: Any) -> tf.TensorSpec:
        arrays = [as_array(value, f"a batch of the {type(data).__name__}") for value in values]
        narrow = narrows_to_float32(arrays[0].dtype)
        dtype = tf.float32 if narrow else tf.as_dtype(arrays[0].dtype)
        shapes = {a.shape[1:] for a in arrays}
        if len({len(shape) for shape in shapes}) > 1:
            raise DataError("shape-mismatch", f"The {type(data).__name__}'s batches differ in rank ({', '.join(map(str, sorted(shapes)))}); "
                                              "give every batch the same number of axes.")
        # An axis whose size differs between the batches read (sequences padded per batch) is None.
        dims = [d if len({shape[i] for shape in shapes}) == 1 else None for i, d in enumerate(arrays[0].shape[1:])]
        return tf.TensorSpec((None, *dims), dtype)

    try:
        count = data.num_batches  # Keras's: len() by default, None for a PyDataset that never ends
    except NotImplementedError:
        raise DataError("unsupported-input", f"The {type(data).__name__} has neither __len__ nor num_batches: define __len__ (its number of "
                                             "batches), or a num_batches property (None for one that never ends).") from None
    passes = _Passes(data)
    if count is None:  # batches 0, 1, 2... as model.fit reads them; an epoch needs steps_per_epoch
        signature = tf.nest.map_structure(spec, *[read(i) for i in (0, 1)])
        # Read ahead on its workers too: the README's "with workers=N its batches read on N
        # threads" held only for a finite one, and an endless one's read one at a time. A peek
        # from batch n starts there (its hooks are never called: it has no epochs of its own).
        endless = tf.data.Dataset.from_generator(lambda: recorded(_read_ahead(read, itertools.count(passes.take_peek() or 0), data.workers,
                                                                              data.max_queue_size)), output_signature=signature)
        endless = endless.apply(tf.data.experimental.assert_cardinality(tf.data.INFINITE_CARDINALITY))
        endless._trainkit_passes = passes  # found again through the maps fit adds (see peek_batches)
        return endless
    if count == 0:
        raise DataError("empty-data", f"The {type(data).__name__} has no batches (len() is 0). Give it at least one batch.")

    # The first, second and last batches: the last is often partial, and sequences padded batch
    # by batch show their varying length in the first two.
    signature = tf.nest.map_structure(spec, *[read(i) for i in sorted({0, min(1, count - 1), count - 1})])

    def refuse_fewer_batches() -> None:
        # Every pass reads the batches len() gave here (the dataset's cardinality): one whose
        # len() fell since (rows dropped in on_epoch_end) was asked for batches past its end, and
        # raised its own IndexError, or trained on empty ones (a false dead-relu: a unit is 0 on
        # every row of a batch of none).
        now = data.num_batches
        if now is not None and now < count:
            err = DataError("unsupported-input", f"The {type(data).__name__}'s len() fell from {count} batches, when it was first read, to {now}: "
                                                 f"each epoch reads the {count} batches it had then, so batch {now} would be past its end. "
                                                 "Keep len() fixed during a fit (fewer rows a batch, not fewer batches), or fit again after "
                                                 "changing it.")
            raise err

    passes.refuse_fewer_batches = refuse_fewer_batches

    def batches() -> Iterable[Any]:
        peek_from = passes.take_peek()
        # A peek reads the next epoch's order: the batches the checks sample are those it trains on first.
        order = range(count) if shuffle_seed is None else np.random.default_rng([shuffle_seed, passes.epochs]).permutation(count)
        if peek_from is not None:
            refuse_fewer_batches()
            yield from _read_ahead(read, order[peek_from:], data.workers, data.max_queue_size)
            return
        passes.epochs += 1
        # model.fit calls it before each epoch's batches too: one that reshuffles or loads a
        # shard there was never called, and every epoch read what __init__ had left.
        if not passes.by_epoch:
            data.on_epoch_begin()
        refuse_fewer_batches()
        yield from _read_ahead(read, order, data.workers, data.max_queue_size)
        if not passes.by_epoch:
            data.on_epoch_end()

    dataset = tf.data.Dataset.from_generator(lambda: recorded(batches()), output_signature=signature)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(count))
    dataset._trainkit_passes = passes  # found again through the maps fit adds (see peek_batches)
    return dataset


class _Passes:
    """The passes of one PyDataset's ``tf.data.Dataset`` (:func:`pydataset_batches`): the epochs
    (each calls its epoch hooks and, shuffled, reads a new order) and the peeks that read its
    batches without them (:func:`peek_batches`); or, handed to a fit's epochs (:func:`epoch_hooks`),
    the epoch hooks called at each epoch's start and end, the passes calling none."""

    def __init__(self, data: keras.utils.PyDataset) -> None:
        self.data = data
        self.epochs = 0  # passes started: the next one's order is seeded by it
        self._peek_from: int | None = None  # a peek asked for: the next pass reads from that batch, without hooks
        self.by_epoch = False  # the fit calls the epoch hooks (begin_epoch, end_epoch), not the passes
        self.refuse_fewer_batches: Callable[[], None] | None = None  # a finite one's len() check (see pydataset_batches)

    def begin_epoch(self) -> None:
        """The PyDataset's ``on_epoch_begin()`` at an epoch's start, then its ``len()`` checked,
        as a pass checks it: one that fell in the last epoch's ``on_epoch_end()`` is refused
        before the rest of the pass reads past its end."""
        self.data.on_epoch_begin()
        if self.refuse_fewer_batches is not None:
            self.refuse_fewer_batches()

    def end_epoch(self) -> None:
        """The PyDataset's ``on_epoch_end()`` at an epoch's end."""
        self.data.on_epoch_end()

    def take_peek(self) -> int | None:
        """The batch a peek asked for starts at, ``None`` for an epoch; the request is used up."""
        peek_from, self._peek_from = self._peek_from, None
        return peek_from

    def peek(self, dataset: tf.data.Dataset, start: int) -> Iterator[Any]:
        """``dataset``'s batches from batch ``start`` of the next epoch's order, read without the
        PyDataset's epoch hooks (``start`` batches are not read at all)."""
        self._peek_from = start
        try:
            elements = iter(dataset)
            # Its generator starts at the first batch asked for, and takes the request then: asked
            # here, so no epoch's pass can ever take it.
            first = next(elements, _END)
        finally:
            self._peek_from = None
        return itertools.chain(() if first is _END else (first,), elements)


_END = object()


def peek_batches(dataset: tf.data.Dataset, start: int = 0, count: int | None = None) -> Iterator[Any]:
    """The batches of ``dataset`` from batch ``start`` on (``count`` of them at most), as the checks read them.

    A dataset of a PyDataset's batches (:func:`pydataset_batches`, or one mapped from it, as
    ``fit`` maps it) is read without calling its ``on_epoch_begin()``/``on_epoch_end()``, in the
    order its next epoch reads, and its first ``start`` batches are not read: the checks' sample
    and their read past it called them each, so a PyDataset that counts epochs or advances a
    curriculum there saw 4 epochs begin and 3 end for a 2-epoch fit, and had the 16 batches the
    read-on skips read only to be discarded. Any other dataset is read with ``skip(start)``.
    """
    passes = _pydataset_passes(dataset)
    # take(), not fewer next() calls: tf.data prefetches, and read 4 to 8 batches past the 16 asked for.
    if passes is None:
        dataset = dataset.skip(start) if start else dataset
        return iter(dataset if count is None else dataset.take(count))
    return passes.peek(dataset if count is None else dataset.take(count), start)


def epoch_hooks(dataset: tf.data.Dataset) -> _Passes | None:
    """The epoch hooks of the PyDataset ``dataset`` reads (through the maps ``fit`` adds), handed
    to the caller: from now on its passes call neither ``on_epoch_begin()`` nor ``on_epoch_end()``,
    the caller calls them at each epoch's start and end (``begin_epoch``, ``end_epoch``); ``None``
    for another dataset.

    For a fit with ``steps_per_epoch``, whose epochs are not the passes: its iterator goes on
    across epochs, so 2 epochs of 2 batches of a 10-batch PyDataset called ``on_epoch_begin()``
    once and ``on_epoch_end()`` never (``model.fit``: twice each), and an endless one's never,
    so a PyDataset that reshuffles or advances a curriculum in them saw no epochs.
    """
    passes = _pydataset_passes(dataset)
    if passes is not None:
        passes.by_epoch = True
    return passes


def _pydataset_passes(dataset: tf.data.Dataset) -> _Passes | None:
    """The :class:`_Passes` of the PyDataset ``dataset`` reads, through the element-wise maps
    ``fit`` adds (dict inputs the model does not read dropped, class weights); ``None`` otherwise.

    Only through ``map`` (and the ``take`` of :func:`peek_batches`): any other link (a ``skip``, a ``filter``, a ``batch``) reads batches
    other than the PyDataset's own one for one, where a peek from a batch would be wrong.
    """
    link = dataset
    while link is not None:
        passes = getattr(link, "_trainkit_passes", None)
        if passes is not None:
            return passes
        name = type(link).__name__
        link = getattr(link, "_input_dataset", None) if ("Map" in name and "FlatMap" not in name) or "Take" in name else None
    return None


def _read_ahead(read: Callable[[int], Any], order: Iterable[Any], workers: int, queue_size: int) -> Iterator[Any]:
    """``read(i)`` for each ``i`` of ``order``, yielded in that order.

    With ``workers`` > 1 the reads run on that many threads, up to ``queue_size`` (at least
    ``workers``) batches ahead of the one yielded, as ``model.fit``'s enqueuer reads a PyDataset:
    read one at a time, a ``__getitem__`` that waits on files (30 ms a batch) made an epoch 4x
    ``model.fit``'s with ``workers=4``. Threads for ``use_multiprocessing`` too: a process pool
    would need the PyDataset pickled, and a ``__getitem__`` that waits on I/O releases the GIL.
    A pass left before its end (``steps_per_epoch``, the checks' first batches) cancels the reads queued.
    """
    if workers <= 1:
        for i in order:
            yield read(int(i))
        return
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="trainkit-pydataset")
    indices = iter(order)
    try:
        queued = collections.deque(pool.submit(read, int(i)) for i in itertools.islice(indices, max(queue_size, workers)))
        while queued:
            batch = queued.popleft().result()  # raises what read raised, in the order read
            following = next(indices, None)
            if following is not None:
                queued.append(pool.submit(read, int(following)))
            yield batch
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def narrows_to_float32(dtype: np.dtype) -> bool:
    """Whether values of ``dtype`` are read as float32, as Keras reads them: float64 in either
    byte order (a big-endian ``">f8"`` is no ``np.float64``, and ``dtype == np.float64`` missed it),
    unless float64 is ``keras.backend.floatx()``."""
    return dtype.kind == "f" and dtype.itemsize == 8 and keras.backend.floatx() != "float64"


def as_array(value: Any, what: str, *, numbers: bool = False) -> np.ndarray:
    """``np.asarray(value)``, or a ``DataError`` saying why ``value`` is not one array.

    Args:
        value: An array-like: numpy, a tensor, a list, a pandas object...
        what: Its name in the error (``"x"``, ``"x['age']"``...).
        numbers: Refuse values that are not numbers (strings, objects), as inputs must be.
            Labels go on to the label checks, which say what string labels need. Either way an
            object array of numbers becomes float32, and complex numbers and np.longdouble's
            float128 (TensorFlow has no such dtype) are refused.

    Raises:
        DataError: ``unsupported-input``.
    """
    if isinstance(value, tf.SparseTensor):
        # np.asarray made it one object, refused as "not numbers: encode text" with its whole repr.
        raise DataError("unsupported-input", f"{what} is a tf.SparseTensor of dense shape {tuple(value.shape)}; trainkit trains "
                                             f"on dense arrays. Pass tf.sparse.to_dense({what}) if it fits in memory, or a tf.data.Dataset "
                                             "of dense batches.")
    if isinstance(value, tf.RaggedTensor):
        raise DataError("unsupported-input", f"{what} is a tf.RaggedTensor (rows of different lengths); trainkit trains on dense arrays. "
                                             f"Pad it first: {what}.to_tensor() (zeros after each row's end), or keras.utils.pad_sequences; for ids (from 1), "
                                             "Embedding(mask_zero=True) leaves the zeros out, as model.fit leaves out a ragged row's missing steps.")
    if hasattr(value, "toarray") and hasattr(value, "tocsr"):  # scipy.sparse
        raise DataError("unsupported-input", f"{what} is a scipy sparse matrix of shape {value.shape}; trainkit trains on dense arrays. "
                                             f"Pass {what}.toarray() if it fits in memory, or a tf.data.Dataset of dense batches.")
    try:
        array = np.asarray(value)
    except ValueError as err:  # rows of different lengths: "inhomogeneous shape"
        raise DataError("unsupported-input", f"{what} cannot be made one array: {str(err).split(' The detected')[0]} "
                                             "Give every row the same shape: pad sequences to one length first (keras.utils.pad_sequences).") from None
    if numbers and array.dtype.kind in "OUS":
        array = _numbers_or_error(array, value, what)
    elif array.dtype.kind == "O" and all(_number_or_missing(v) for v in array.ravel()):
        # Labels too (a nullable pandas column): TensorFlow cannot convert an object array.
        with contextlib.suppress(TypeError, ValueError):
            array = array.astype(np.float32)
    if array.dtype.kind == "c":  # TensorFlow's cast to float32 drops the imaginary part in silence
        raise DataError("unsupported-input", f"{what} holds complex numbers ({array.dtype}); the model computes in real numbers. "
                                             f"Pass the real and imaginary parts as features of their own: np.concatenate([{what}.real, {what}.imag], axis=-1).")
    if array.dtype.kind == "f" and array.dtype.itemsize > 8:
        # np.longdouble: TensorFlow has no such dtype, and failed with its own words ("Unsupported
        # numpy type: NPY_LONGDOUBLE", or a PyDataset's "Cannot convert ... to a TensorFlow DType").
        raise DataError("unsupported-input", f"{what} holds {array.dtype} values (np.longdouble), which TensorFlow has no dtype for "
                                             f"(model.fit refuses them too: 'Invalid dtype: {array.dtype}'). Convert them with .astype(np.float32) "
                                             "(np.float64 for a model computing in float64).")
    return array


def _number_or_missing(value: Any) -> bool:
    return isinstance(value, int | float | np.number | np.bool_) or value is None


def _numbers_or_error(array: np.ndarray, value: Any, what: str) -> np.ndarray:
    """An object array of numbers as float32 (nullable pandas columns); text is refused, even
    text that reads as numbers ("0.5" from a csv read as strings): numpy would convert it
    silently, and a column of text is more often a category than a number."""
    if array.dtype.kind == "O" and all(_number_or_missing(v) for v in array.ravel()):
        try:
            return array.astype(np.float32)
        except (TypeError, ValueError):
            pass
    columns = list(getattr(value, "columns", [])) if array.ndim == 2 else []
    where, sample = "", array.ravel()
    for j, column in enumerate(columns):
        if not all(_number_or_missing(v) for v in array[:, j]):
            where, sample = f" (column {column!r})", array[:, j]
            break
    bad = next((v for v in sample if not _number_or_missing(v)), None)
    if isinstance(bad, list | tuple | np.ndarray):
        # An object array of token-id lists (np.array(seqs, dtype=object)) was told to "encode text
        # and categories first": its rows are sequences of several lengths, which need padding.
        lengths = {len(v) for v in sample if isinstance(v, list | tuple | np.ndarray)}
        # Lists of one length (a DataFrame column of lists) need stacking, not padding.
        fix = ("stack them into one array first (np.stack(rows))" if len(lengths) == 1 else
               "rows of different lengths are no one array of numbers: pad them to one length first "
               "(keras.utils.pad_sequences(rows, padding='post'))")
        raise DataError("unsupported-input", f"{what} holds sequences as values{where}, such as {bad!r:.80}; {fix}.")
    raise DataError("unsupported-input", f"{what} holds values that are not numbers{where}, such as {bad!r}. A model trains on numbers: "
                                         "encode text and categories first (one-hot, or integer ids for an Embedding layer), or "
                                         "convert numbers read as text with .astype('float32').")


def input_kinds(model: keras.Model) -> tuple[bool, list[tuple[Any, bool]]] | None:
    """Whether the model's inputs come as a dict, and each input's key (a dict input's key, else
    its name) with whether it takes text, in ``model.inputs``' order; ``None`` when unknown
    (a subclassed model, before it is called)."""
    try:
        struct = model.input
    except (AttributeError, ValueError):  # a Sequential model never called has inputs, not an input
        try:
            struct = model.inputs
        except (AttributeError, ValueError):
            return None
    if struct is None or (isinstance(struct, Mapping | list | tuple) and not struct):
        return None
    if isinstance(struct, Mapping):
        items = [(k, struct[k]) for k in sorted(struct)]  # the order Keras flattens a dict in
    else:
        items = [(getattr(t, "name", None), t) for t in tf.nest.flatten(struct)]
    return isinstance(struct, Mapping), [(k, "string" in str(getattr(t, "dtype", ""))) for k, t in items]


def paired_inputs(x: Any, model: keras.Model, what: str = "x") -> list[tuple[str, Any, bool]]:
    """``(name, value, takes_text)`` for each part of ``x`` that a model input reads: a dict's
    entries by key, a list's or tuple's by position (several inputs), one array for one input.
    Empty when the model's inputs are unknown."""
    kinds = input_kinds(model)
    if kinds is None:
        return []
    by_key, inputs = kinds
    if isinstance(x, Mapping):
        return [(f"{what}[{key!r}]", x[key], text) for key, text in inputs if key in x]
    if isinstance(x, list | tuple) and len(inputs) > 1 and not by_key:
        return [(f"{what}[{i}]", value, text) for i, (value, (_, text)) in enumerate(zip(x, inputs, strict=False))]
    if len(inputs) == 1 and not isinstance(x, Mapping | list | tuple):
        return [(what, x, inputs[0][1])]
    return []


def refuse_mismatched_kinds(x: Any, model: keras.Model, what: str = "x") -> None:
    """Raises ``DataError(unsupported-input)`` for an array whose kind is not what its input takes,
    in a model with text inputs (:func:`as_array` with ``numbers=True`` checks the others): text
    for an input of numbers beside them, numbers or missing values (``None``, NaN) for a text input.

    TensorFlow fails on either in the first step ("Cast string to float is not supported",
    "Failed to convert a NumPy array to a Tensor"), from deep inside the compiled loop.
    """
    for name, a, text in paired_inputs(x, model, what):
        if not isinstance(a, np.ndarray):
            continue
        if not text:
            if a.dtype.kind in "OUS":
                _numbers_or_error(a, a, name)  # object arrays of numbers were made float32 already
            continue
        if a.dtype.kind in "biuf":
            raise DataError("unsupported-input", f"{name} holds numbers ({a.dtype}), but the model's input for it takes text (dtype string). "
                                                 f"Pass the text itself, or ids as strings ({name}.astype(str)) for a StringLookup; "
                                                 "for integer ids, build that input with dtype='int64' and use an IntegerLookup.")
        if a.dtype.kind == "O":
            flat = a.ravel()
            bad = next((i for i, v in enumerate(flat) if not isinstance(v, str | bytes)), None)
            if bad is not None:
                row = bad // max(1, flat.size // max(1, len(a)))
                if flat[bad] is None or (isinstance(flat[bad], float) and math.isnan(flat[bad])):  # pandas' missing text
                    raise DataError("unsupported-input", f"{name} holds a missing value ({flat[bad]!r}) at row {row}, but the model's input for it "
                                                         "takes text (dtype string). Fill the missing values first (with \"\" or a token of their "
                                                         "own: pandas' df[column].fillna(\"\")), or drop those rows.")
                raise DataError("unsupported-input", f"{name} holds {flat[bad]!r} at row {row}, which is not text, but the model's input for it "
                                                     f"takes text (dtype string). Convert every value to a string first: {name}.astype(str).")


def takes_text(model: keras.Model) -> bool:
    """Whether an input of the model is a string tensor (a TextVectorization or StringLookup model)."""
    try:
        inputs = tf.nest.flatten(model.inputs or [])
    except (AttributeError, ValueError):  # a subclassed model: its inputs are unknown, let it decide
        return True
    return any("string" in str(getattr(t, "dtype", "")) for t in inputs)
