"""The first batches of a ``tf.data.Dataset``, a ``keras.utils.PyDataset`` or a
:class:`DatasetSample`, read as numpy arrays for the data checks.

Apart from the rules: the only code of the data checks that reads a batch source; the rules see
numpy arrays either way.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import keras
import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetSample:
    """A dataset's first batches, already read: checked as that dataset would be, reading nothing.

    The trainer reads a dataset's first batches once and shares them
    (:meth:`trainkit.sources.DatasetSource.sample`); wrapping them in a dataset again for the
    checks (``from_generator``) cost ~20 ms of tracing every ``fit``.

    Attributes:
        batches: The elements read, in order: ``(x, y)``, ``(x, y, w)`` or ``x``.
        element_spec: The dataset's ``element_spec`` (tells batched elements from single rows).
    """

    batches: Sequence[Any]
    element_spec: Any
    #: Whether the dataset's pipeline shuffles (see :func:`shuffles`), ``None`` when unknown.
    shuffled: bool | None = None
    #: Whether its first batches are a random draw of its rows (see :func:`draws_rows`), ``None`` when unknown.
    drawn: bool | None = None
    #: Whether its pipeline shuffles rows only in buffers that hold fewer than it reads (see :func:`shuffle_short`).
    shuffle_short: bool = False
    #: Batches in one pass through the dataset, ``None`` when unknown or endless.
    cardinality: int | None = None
    #: The dataset itself, for the labels past the batches read (:class:`FurtherRows`).
    dataset: Any = None
    #: Gives the one :class:`FurtherRows` of the dataset that the checks and the chance level share
    #: (:meth:`trainkit.sources.DatasetSource.shared_further_rows`); ``None``: a reader of their own.
    further: Callable[[int, Any], FurtherRows | None] | None = None
    #: The class name of the ``keras.utils.PyDataset`` whose batches the dataset reads, ``None`` for another dataset.
    pydataset: str | None = None


def _is_dataset(obj: Any) -> bool:
    import tensorflow as tf

    return isinstance(obj, tf.data.Dataset)


def is_batch_source(obj: Any) -> bool:
    """Whether ``obj`` yields batches (a dataset, a PyDataset or a :class:`DatasetSample`), not arrays."""
    return _is_dataset(obj) or isinstance(obj, keras.utils.PyDataset | DatasetSample)


def shuffles(dataset: Any) -> bool | None:
    """Whether a ``tf.data.Dataset``'s pipeline holds a shuffle anywhere (``.shuffle()``,
    ``list_files``' own), read from the chain of datasets it was built from; ``None`` when a link
    of it cannot be read.

    Its first batches alone cannot tell rows sorted by label from a class that is nearly all of
    them when they hold one class; a pipeline without a shuffle can. Not read from the serialised
    graph: that copies every tensor the pipeline holds, and ``from_tensor_slices`` of 200 MB of
    rows took 4 s and 570 MB more memory at every fit.
    """
    return _pipeline_holds(dataset, "Shuffle")


def draws_rows(dataset: Any) -> bool | None:
    """Whether a ``tf.data.Dataset``'s first batches are a random draw of its rows: its pipeline
    shuffles rows (upstream of a ``.batch()``, with no ``unbatch``/``flat_map``/``interleave``
    between) in a buffer that holds all the rows before it (``buffer_size >= cardinality``; through
    a ``.repeat()`` before it, one pass's rows). ``False`` where none does and every row shuffle's
    buffer is known to hold fewer (:func:`shuffle_short`), or none shuffles rows; ``None`` where a
    row shuffle's rows or buffer are unknown (a generator's, a ``filter``'s length; a buffer that is
    no constant), or a link of it cannot be read. ``True`` too for a ``*_dataset_from_directory``
    dataset made with ``shuffle=True``, which shuffles all its files first (:func:`_shuffled_directory`).

    Not any shuffle (:func:`shuffles`): one buffer of ``B`` rows draws its first ``k`` from the
    first ``B + k`` rows alone. 2,000 rows sorted by label (4 classes of 500), ``.shuffle(B).batch(32)``,
    first 8 batches: B = 100 held class 0 alone, 1,000 none of class 3, 1,500 23 of class 3 (64 in a
    random draw), 2,000 64. Nor a shuffle of batches (``.batch(32).shuffle(n)``) or of files
    (``list_files``' own before an ``interleave``), whose rows come in their own order within each.
    """
    try:
        if any(_shuffled_directory(link) for link in _links(dataset)):
            return True
        covered = [_covering_shuffle(link) for link in _row_links(dataset) if "Shuffle" in type(link).__name__]
    except Exception:  # a dataset of another kind (a wrapper without the method)
        return None
    return True if True in covered else None if None in covered else False


def _shuffled_directory(link: Any) -> bool:
    """Whether a link is a ``keras.utils.image_dataset_from_directory`` (or ``text_``/``audio_``)
    dataset made with ``shuffle=True`` (its default): Keras shuffles its whole list of files before
    it reads them, so its rows come in random order whatever its own shuffle buffer (``batch_size *
    8``, 256 files for the default 32, which :func:`_covering_shuffle` reads as too short)."""
    return isinstance(getattr(link, "file_paths", None), list | tuple) and shuffles(link) is True


def shuffle_short(dataset: Any) -> bool:
    """Whether a ``tf.data.Dataset``'s pipeline shuffles its rows only in buffers known to hold
    fewer rows than they read (:func:`draws_rows` ``False`` beside a row shuffle): its first batches
    are then drawn from its first rows, whose class mix need not be the data's."""
    try:
        return draws_rows(dataset) is False and any("Shuffle" in type(link).__name__ for link in _row_links(dataset))
    except Exception:  # a dataset of another kind (a wrapper without the method)
        return False


def _row_links(dataset: Any) -> Iterator[Any]:
    """The links of a dataset's chain (as :func:`_links`) whose elements are rows of its batches:
    those upstream of a ``.batch()`` and of no ``unbatch``/``flat_map``/``interleave`` below it."""
    seen: set[tuple[int, bool]] = set()
    chain = [(dataset, False)]
    while chain:
        link, rows = chain.pop()
        if (id(link), rows) in seen:
            continue
        seen.add((id(link), rows))
        if rows:
            yield link
        name = type(link).__name__
        if "Unbatch" in name or "FlatMap" in name or "Interleave" in name:
            rows = False
        elif "Batch" in name:
            rows = True
        chain.extend((i, rows) for i in link._inputs())


def _covering_shuffle(link: Any) -> bool | None:
    """Whether a ``.shuffle()`` link's buffer holds all the elements of the dataset it reads (one
    pass's, through a ``.repeat()``); ``None`` when either is unknown."""
    try:
        buffer = int(link._buffer_size)
    except (AttributeError, TypeError, ValueError):  # a symbolic tensor: unknown
        return None
    before = link._input_dataset
    # One pass's rows, however many passes: .repeat(2) of 100 rows holds 200, and a buffer of 100
    # holds each of the 100 rows (its first 100 + k rows are all of them, and more).
    while "Repeat" in type(before).__name__:
        before = before._input_dataset
    rows = int(before.cardinality())
    if rows <= 0 or buffer <= 0:
        return None
    return buffer >= rows


def repeats(dataset: Any) -> bool | None:
    """Whether a ``tf.data.Dataset``'s pipeline holds a ``.repeat()`` anywhere (an epoch of it may
    then read a row more than once), read as :func:`shuffles` reads it; ``None`` when a link of it
    cannot be read."""
    return _pipeline_holds(dataset, "Repeat")


def _pipeline_holds(dataset: Any, kind: str) -> bool | None:
    """Whether a link of a ``tf.data.Dataset``'s chain has ``kind`` in its class name
    (``ShuffleDataset``, ``RepeatDataset``); ``None`` when a link of it cannot be read."""
    try:
        return any(kind in type(link).__name__ for link in _links(dataset))
    except Exception:  # a dataset of another kind (a wrapper without the method)
        return None


def _links(dataset: Any) -> Iterator[Any]:
    """Each dataset of a ``tf.data.Dataset``'s chain once, itself first: the datasets it reads,
    theirs, and so on (through ``_inputs()``, tf.data's own and private: a link of another kind
    raises, which the callers read as "cannot be read")."""
    seen: set[int] = set()
    chain = [dataset]
    while chain:
        link = chain.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        chain.extend(link._inputs())


def shuffled_apart(dataset: Any) -> bool | None:
    """Whether a ``tf.data.Dataset``'s pipeline zips a dataset that shuffles with one of as many
    elements that does not (``zip((x_ds, y_ds.shuffle(n)))``): every row then meets another row's
    label. ``None`` when a link of it cannot be read.

    Only that mix is read: two branches that each shuffle pair their rows alike when their seeds
    match, a branch that reads no rows (:func:`_generated`: a ``repeat()``-ed constant, a
    ``range`` counter) pairs with no row, whatever its length, and sides that each yield whole
    ``(x, y)`` examples keep every row with its label: ``zip((ds, ds.shuffle(n)))`` pairs
    examples on purpose (mixup, a siamese network's pairs).
    """
    try:
        return any(True for _ in _apart_zips(dataset))
    except Exception:  # a dataset of another kind (a wrapper without the method)
        return None


def _apart_zips(dataset: Any) -> Iterator[list[Any]]:
    """The sides that shuffle of each zip :func:`shuffled_apart` finds in a dataset's pipeline."""
    for link in _links(dataset):
        rows = [i for i in link._inputs() if not _generated(i)] if "Zip" in type(link).__name__ else []
        if len(rows) >= 2 and not _whole_examples(rows):
            sizes = {int(i.cardinality()) for i in rows}
            shuffled = [shuffles(i) for i in rows]
            if len(sizes) == 1 and min(sizes) > 0 and True in shuffled and False in shuffled:
                yield [side for side, shuffling in zip(rows, shuffled, strict=True) if shuffling]


def shuffled_apart_by_directory(dataset: Any) -> bool:
    """Whether a side that shuffles in a zip :func:`shuffled_apart` finds was made by Keras's
    ``image_dataset_from_directory`` (or ``text_``/``audio_``), read from the ``file_paths`` it
    sets on a link of that side's chain: those shuffle their files unless given ``shuffle=False``,
    so ``zip((image_dataset_from_directory(d, labels=None), labels_ds))`` shuffles the images
    alone though no ``.shuffle()`` was written. Only where that dataset shuffles itself: one made
    with ``shuffle=False`` and then given a ``.shuffle()`` of the user's was told it "shuffles its
    files unless given shuffle=False", and to pass the ``shuffle=False`` it had."""
    try:
        return any(isinstance(getattr(link, "file_paths", None), list | tuple) and shuffles(link)
                   for sides in _apart_zips(dataset) for side in sides for link in _links(side))
    except Exception:  # a dataset of another kind (a wrapper without the method)
        return False


#: Datasets that make their elements rather than read rows: ``range``, ``from_tensors`` (a constant,
#: repeated), ``Dataset.random``. ``from_generator`` is a ``flat_map`` over ``from_tensors``: not one.
_GENERATING = ("RangeDataset", "TensorDataset", "RandomDataset")


def _whole_examples(datasets: list[Any]) -> bool:
    """Whether zipped datasets each yield ``(x, y)`` or ``(x, y, sample_weight)`` tuples, each row
    with its label: alike (``zip((ds, ds.shuffle(n)))``). A two-input model's ``(x1, x2)`` zipped with
    a two-output model's ``(y1, y2)`` are tuples of two too, of other specs: they were left out."""
    specs = [dataset.element_spec for dataset in datasets]
    return all(isinstance(spec, tuple) and 2 <= len(spec) <= 3 for spec in specs) and all(spec == specs[0] for spec in specs)


def _generated(dataset: Any) -> bool:
    """Whether a dataset's chain starts from :data:`_GENERATING` datasets alone, and no
    ``flat_map``/``interleave`` (which may read files or a generator) reads rows from them: it then
    pairs with no row in a zip (``zip((rows.shuffle(n), Dataset.from_tensors(1.0).repeat(n)))``)."""
    chain = [dataset]
    while chain:
        link = chain.pop()
        name = type(link).__name__.lstrip("_")
        if "FlatMap" in name or "Interleave" in name or "Unbatch" in name:
            return False
        if _map_holds_data(link):
            # It reads rows of its own: range(n).shuffle(n).map(lambda i: tf.gather(x, i)), zipped
            # with the labels unshuffled, was left out (as was from_tensors(y).unbatch() above).
            return False
        inputs = list(link._inputs())
        if not inputs and name not in _GENERATING:
            return False
        chain.extend(inputs)
    return True


def _map_holds_data(link: Any) -> bool:
    """Whether a dataset link's map function holds rows to read: a captured tensor (a variable, a
    tensor of the caller's) or a constant of more than one value (a numpy array, embedded)."""
    function = getattr(getattr(link, "_map_func", None), "function", None)
    if function is None:
        return False
    if function.captured_inputs:
        return True
    return any(op.type == "Const" and (op.outputs[0].shape.num_elements() or 0) > 1 for op in function.graph.get_operations())


def _is_random_op(op_type: str) -> bool:
    """Whether an op draws random numbers (``RandomUniform``, ``StatelessRandomUniformV2``,
    ``TruncatedNormal``, a ``tf.random.Generator``'s ``StatefulUniform``...)."""
    return ("Random" in op_type or "TruncatedNormal" in op_type or "Multinomial" in op_type
            or op_type.startswith(("StatefulUniform", "StatefulStandardNormal")))


#: The inputs of a stateless random op that set its numbers (``seed``; a V2 op's ``key`` and ``counter``).
_SEED_ARGS = frozenset({"seed", "key", "counter"})


def _draws_anew(op: Any, top: bool) -> bool:
    """Whether a random ``op`` draws other numbers at every pass: a stateful one
    (``RandomUniform``), or a stateless one whose seed a stateful op gives (a
    ``keras.layers.Random*``'s seed variable, a ``tf.random.Generator``'s ``make_seeds``).

    A stateless op seeded by constants or by the element itself
    (``tf.image.stateless_random_flip_left_right(x, seed=(1, 2))``, a seed from ``enumerate()``)
    draws the same numbers every epoch: the fixed noisy or cropped validation rows a denoising or
    inpainting task is validated on, built so on purpose. In a nested function (``top`` false) the
    seed may come from the caller's state: judged as drawing anew.
    """
    if not op.type.startswith("Stateless"):
        return True
    seen: set[str] = set()
    # The seed's inputs alone: a shape read from an image a numpy_function loaded (stateful) made
    # a crop seeded by (1, 2) read as drawing anew.
    args = [arg.name for arg in op.op_def.input_arg]
    seeds = [t for t, name in zip(op.inputs, args, strict=False) if name in _SEED_ARGS] if len(args) == len(op.inputs) else []
    parents = [t.op for t in seeds or op.inputs]
    while parents:
        parent = parents.pop()
        if parent.name in seen:
            continue
        seen.add(parent.name)
        if parent.op_def.is_stateful or (parent.type == "Placeholder" and not top):
            return True
        parents.extend(t.op for t in parent.inputs)
    return False


def _run_graphs(graph: Any) -> list[tuple[Any, bool]]:
    """A map function's graph and the function graphs its ops call (``tf.function``s, ``tf.cond``
    branches; their own calls too), each with whether it is the map function's own.

    A ``tf.cond`` on a constant runs its taken branch only: augmentation behind a training flag
    that the validation map sets to ``tf.constant(False)`` never runs there, and was reported.
    """
    import tensorflow as tf

    functions: dict[str, Any] = {}
    pending = [graph]
    while pending:  # every function defined in the map's graph, by name, nested ones too
        for name, function in getattr(pending.pop(), "_functions", {}).items():
            if name not in functions and getattr(function, "graph", None) is not None:
                functions[name] = function.graph
                pending.append(function.graph)
    found, todo, seen = [(graph, True)], [graph], set()
    while todo:
        for op in todo.pop().get_operations():
            pred = tf.get_static_value(op.inputs[0]) if op.type in ("If", "StatelessIf") and op.inputs else None
            if pred is not None:
                names = [op.get_attr("then_branch" if pred else "else_branch").name]
            else:
                names = [value.func.name for value in op.node_def.attr.values() if value.HasField("func")]
                names += [f.name for value in op.node_def.attr.values() for f in value.list.func]
            for name in names:
                if name in functions and name not in seen:
                    seen.add(name)
                    found.append((functions[name], False))
                    todo.append(functions[name])
    return found


def random_ops(dataset: Any) -> tuple[str, ...] | None:
    """The random ops the map functions of a ``tf.data.Dataset``'s pipeline run (and the
    ``tf.function`` functions they call) that draw anew at every pass (see :func:`_draws_anew`),
    sorted; ``()`` for none, ``None`` when a link of it cannot be read.

    Augmentation or noise mapped over a pipeline (``tf.image.random_flip_left_right``,
    ``tf.random.normal``, a ``keras.layers.RandomFlip``, which augments when called outside a
    model) shows as such ops. Read from the traced functions' op lists, as :func:`shuffles` reads
    the chain: no element is produced and no graph serialised.
    """
    found: set[str] = set()
    try:
        for link in _links(dataset):
            wrapper = getattr(link, "_map_func", None)
            for graph, top in _run_graphs(wrapper.function.graph) if wrapper is not None else ():
                found.update(op.type for op in graph.get_operations() if _is_random_op(op.type) and _draws_anew(op, top))
    except Exception:  # a dataset of another kind, or a tf.data without these attributes
        return None
    return tuple(sorted(found))


#: Rows a never-shuffled dataset's labels are read to, past its sampled batches, when those hold one
#: class, and the seconds that reading may take: 2,048 rows of one class is a random order's
#: less than once in 10,000 tries for any class above 0.45% of the rows.
FURTHER_ROWS = 2048
FURTHER_SECONDS = 2.0


class FurtherRows:
    """The batches of a dataset that never shuffles past its first ``skip_batches``, read at most
    once, to :data:`FURTHER_ROWS` rows or :data:`FURTHER_SECONDS` in all, for every check that asks.

    A pipeline that never shuffles shows its first rows first: its labels alone tell rows sorted by
    label from a rare class the first batches missed (1% positives: 256 rows without one 7.6% of
    the time); windows of a series whose first 800 steps are 0 (``timeseries_dataset_from_array``)
    were all 0 in the 8 batches read, and told constant-inputs; a rising series' targets looked
    scaled there. Each check read the batches anew (a dataset of two regression outputs, each
    looking scaled, read them twice: 2 s each behind a slow ``map``); they share one read now,
    which stops as soon as what was asked is known.
    """

    def __init__(self, dataset: Any, skip_batches: int, sampled_inputs: Any, kept: Sequence[Any] = (), kept_all: bool = False,
                 reader: Callable[[Any, int], Iterator[Any]] | None = None) -> None:
        import tensorflow as tf

        self._dataset = dataset
        # reader(dataset, n): its batches from batch n on (default: dataset.skip(n), which reads
        # the n it discards); trainkit.inputs.peek_batches reads a PyDataset's from n, without its epoch hooks.
        self._reader = reader or _skipping
        self._elements: Iterator[Any] | None = None
        # Batches past ``skip_batches`` a reader of the dataset already holds (its source's kept
        # sample, the 8 batches after the checks' 8), read first: a pass from the start skipped
        # the sampled batches through the whole pipeline (its maps, a file's parsing) and read
        # the kept ones again, 16 batches for the 3 a 2,048-row budget needs of 1,000-row batches.
        self._kept = list(kept)
        # Whether those are every batch left (the dataset ended within them): nothing to read after.
        self._kept_all = kept_all
        self._past_kept = skip_batches + len(self._kept)  # where a pass of its own starts
        # The first sampled row alone, copied: the source keeps this reader for the chance level,
        # and a view would keep every sampled batch's inputs with it.
        self._reference = [np.array(np.asarray(leaf)[:1]) for leaf in tf.nest.flatten(sampled_inputs)]
        self._labels: list[Any] = []
        self._weights: list[np.ndarray] = []
        self._rows = 0
        #: Batches sampled before the rows read here: those come after them.
        self.skip_batches = skip_batches
        #: Whether the read reached the dataset's end (every row read), not the budget's.
        self.ended = False
        self._deadline = 0.0
        self._done = False
        self._vary: bool | None = False  # True at the first row unlike the sampled ones, None: another structure

    def _read_one(self) -> bool:
        """Reads one batch more; ``False`` once the dataset or the budget is spent."""
        import tensorflow as tf

        if not self._deadline:
            self._deadline = time.monotonic() + FURTHER_SECONDS
        spent = self._done or self._rows >= FURTHER_ROWS or time.monotonic() > self._deadline
        if spent or self._kept:
            element = None if spent else self._kept.pop(0)
        elif self._kept_all:
            element = None  # the held batches were the dataset's last
        else:
            try:
                if self._elements is None:
                    self._elements = self._reader(self._dataset, self._past_kept)
                element = next(self._elements, None)
            except tf.errors.OpError:
                from trainkit.inputs import forget_source_error

                # A batch past those training reads may fail (a PyDataset that never ends raising
                # at batch 100, a corrupt record further on): the checks read no further, and the
                # fit goes on to fail, if ever, where it reads that batch itself. It failed before
                # the first step, where model.fit trained its 3 epochs of 5 steps.
                forget_source_error()
                spent = True
                element = None
        if element is None:
            self.ended = self.ended or not spent
            self._done, self._elements, self._kept = True, None, []  # the iterator and the held batches let go
            return False
        y = tf.nest.map_structure(np.asarray, element[1])
        self._labels.append(y)
        if len(element) > 2:  # the rows' weights (class_weight folded in), for the chance level
            self._weights.append(np.asarray(element[2]))
        self._rows += _rows(y)
        if self._vary is False:  # the inputs are converted only while none has differed yet
            leaves = [np.asarray(leaf) for leaf in tf.nest.flatten(element[0])]
            if len(leaves) != len(self._reference):
                self._vary = None  # batches of another structure
            elif any(np.shape(leaf)[1:] != ref.shape[1:] or not np.all(leaf == ref) for leaf, ref in zip(leaves, self._reference, strict=True)):
                self._vary = True
        return True

    def labels(self) -> Any:
        """The labels of the batches past those sampled, in the structure the dataset gives them
        (a dict or list for several outputs), each leaf concatenated; ``None``: none to read."""
        import tensorflow as tf

        while self._read_one():
            pass
        if not self._labels:
            return None  # none left
        try:  # several outputs' labels come as a structure: each leaf concatenated
            return tf.nest.map_structure(lambda *parts: np.concatenate(parts), *self._labels)
        except (TypeError, ValueError):
            return None  # batches of other structures or shapes

    def weights(self) -> np.ndarray | None:
        """The weights of the rows :meth:`labels` gives, concatenated (read as far as it reads);
        ``None`` for a dataset of ``(x, y)`` batches."""
        while self._read_one():
            pass
        return np.concatenate(self._weights) if self._weights else None

    def inputs_vary(self) -> bool | None:
        """Whether the inputs past the batches sampled differ from the first sampled row (each of
        those rows the same): ``True`` at the first that does, ``False`` when none does, ``None``
        when none is left to read or the batches have another structure."""
        while self._vary is False and self._read_one():
            pass
        return self._vary if self._labels else None


def _skipping(dataset: Any, start: int) -> Iterator[Any]:
    """A dataset's elements from ``start`` on (the first ``start`` read and discarded)."""
    return iter(dataset.skip(start))


def further_rows(data: Any, skip_batches: int, sampled_inputs: Any, kept: Sequence[Any] = (), kept_all: bool = False,
                 reader: Callable[[Any, int], Iterator[Any]] | None = None) -> FurtherRows | None:
    """A :class:`FurtherRows` of a dataset (or :class:`DatasetSample`) of ``(x, y)`` or ``(x, y, w)``
    elements past its first ``skip_batches`` (``sampled_inputs``: those batches' inputs); ``None``
    for anything else. Nothing is read until a check asks; a :class:`DatasetSample` whose source
    shares one reader gives that one. ``kept``: the dataset's batches past ``skip_batches`` read
    already, read first (``kept_all``: they are all of them). ``reader``: see :class:`FurtherRows`."""
    if isinstance(data, DatasetSample) and data.further is not None:
        return data.further(skip_batches, sampled_inputs)
    dataset = data.dataset if isinstance(data, DatasetSample) else data if _is_dataset(data) else None
    if dataset is None or not (isinstance(dataset.element_spec, tuple) and 2 <= len(dataset.element_spec) <= 3):
        return None
    return FurtherRows(dataset, skip_batches, sampled_inputs, kept, kept_all, reader)


def dataset_facts(data: Any) -> tuple[bool | None, int | None]:
    """(whether it shuffles, batches in one pass) of a dataset or :class:`DatasetSample`;
    ``(None, None)`` for anything else or what is unknown."""
    if isinstance(data, DatasetSample):
        return data.shuffled, data.cardinality
    if _is_dataset(data):
        cardinality = int(data.cardinality())
        return shuffles(data), cardinality if cardinality >= 0 else None
    return None, None


def dataset_drawn(data: Any) -> bool | None:
    """:func:`draws_rows` of a dataset or :class:`DatasetSample`; ``None`` for anything else."""
    if isinstance(data, DatasetSample):
        return data.drawn
    return draws_rows(data) if _is_dataset(data) else None


def dataset_shuffle_short(data: Any) -> bool:
    """:func:`shuffle_short` of a dataset or :class:`DatasetSample`; ``False`` for anything else."""
    if isinstance(data, DatasetSample):
        return data.shuffle_short
    return shuffle_short(data) if _is_dataset(data) else False


def pydataset_name(data: Any) -> str | None:
    """The class name of the ``keras.utils.PyDataset`` that ``data`` is or reads (a
    :class:`DatasetSample` of one), ``None`` for anything else."""
    if isinstance(data, keras.utils.PyDataset):
        return type(data).__name__
    return data.pydataset if isinstance(data, DatasetSample) else None


def file_paths(data: Any) -> tuple[str, ...] | None:
    """The files a ``keras.utils.image_dataset_from_directory`` (or ``text_``/``audio_``) dataset
    reads, one a row, from the ``file_paths`` attribute Keras sets on it (a
    :class:`DatasetSample`'s dataset's too); ``None`` for any other data, or a dataset mapped or
    cached since (a new object, without the attribute)."""
    dataset = data.dataset if isinstance(data, DatasetSample) else data
    paths = getattr(dataset, "file_paths", None) if _is_dataset(dataset) else None
    if not isinstance(paths, list | tuple) or not all(isinstance(p, str) for p in paths):
        return None
    return tuple(paths)


def _to_numpy(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {k: _to_numpy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_numpy(v) for v in value]
    if hasattr(value, "numpy"):
        value = value.numpy()
    return np.asarray(value)


def _concat(parts: list[Any]) -> Any:
    """Concatenates a list of same-structured batches (arrays, lists or dicts of arrays)."""
    first = parts[0]
    if first is None:
        return None
    if isinstance(first, Mapping):
        return {k: _concat([p[k] for p in parts]) for k in first}
    if isinstance(first, list):
        return [_concat([p[i] for p in parts]) for i in range(len(first))]
    if first.ndim == 0:
        return np.stack(parts)
    return np.concatenate(parts, axis=0)


def _trailing_shapes(value: Any) -> list[tuple[int, ...]]:
    """The shapes without their first axis of every array in a (nested) batch."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [s for k in sorted(value, key=str) for s in _trailing_shapes(value[k])]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _trailing_shapes(v)]
    return [tuple(np.shape(value)[1:])]


def _split_element(element: Any) -> tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` of a dataset element (``None`` for the parts it lacks)."""
    if isinstance(element, tuple | list) and 2 <= len(element) <= 3:
        return element[0], element[1], (element[2] if len(element) == 3 else None)
    return element, None, None


def sample_first_batches(data: Any, sample_batches: int, model_input_ranks: list[int] | None) -> tuple[Any, Any, Any, int, tuple[int, ...]] | None:
    """(x, y, sample weights, batches read, rows of each batch) from the first batches of a
    dataset, or ``None`` if it cannot be read."""
    if _is_dataset(data) or isinstance(data, DatasetSample):
        import tensorflow as tf

        spec = data.element_spec
        x_spec = spec[0] if isinstance(spec, tuple) and 2 <= len(spec) <= 3 else spec
        first_spec = tf.nest.flatten(x_spec)[0]
        # Single examples have one axis less than the model's input; a batch of an unknown size
        # (first axis None) with one axis less is batched rows that lack the feature axis, which
        # the shape check reports (stacked as rows, 5 batches of 8 read as x of shape (5, 8)).
        unbatched = (bool(model_input_ranks) and first_spec.shape.rank == model_input_ranks[0] - 1
                     and not (first_spec.shape.rank and first_spec.shape[0] is None))
        take = sample_batches * 64 if unbatched else sample_batches
        read = data.batches[:take] if isinstance(data, DatasetSample) else data.take(take)
        elements = [_split_element(_to_numpy(e)) for e in read]
        if unbatched:
            elements = [(_expand(x), _expand(y), _expand(w)) for x, y, w in elements]
    elif isinstance(data, keras.utils.PyDataset):
        try:
            count = min(len(data), sample_batches)
        except TypeError:
            count = sample_batches
        elements = []
        for i in range(count):
            try:
                elements.append(_split_element(_to_numpy(data[i])))
            except IndexError:
                break
    else:
        return None
    if not elements:
        return None
    # Batches of another shape (sequences padded per batch to their own length) cannot be
    # concatenated: the checks read those shaped like the first.
    first = _trailing_shapes(elements[0])
    elements = [e for e in elements if _trailing_shapes(e) == first]
    xs = _concat([e[0] for e in elements])
    ys = _concat([e[1] for e in elements]) if elements[0][1] is not None else None
    ws = _concat([e[2] for e in elements]) if all(e[2] is not None for e in elements) else None
    return xs, ys, ws, len(elements), tuple(_rows(e[0]) for e in elements)


def _rows(value: Any) -> int:
    """Rows of a batch: the first axis of its first array (0 for a scalar)."""
    while isinstance(value, Mapping | list | tuple):
        if not value:
            return 0
        value = next(iter(value.values())) if isinstance(value, Mapping) else value[0]
    shape = np.shape(value)
    return int(shape[0]) if shape else 0


def _expand(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return {k: _expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value[None, ...]
