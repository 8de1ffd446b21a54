"""TensorBoard event files, written off the training thread.

The training thread only enqueues numpy arrays; a background thread turns them into serialized
``Event`` protobufs and appends them with TensorFlow's C++ record writer (:class:`RecordEventWriter`,
the same file format as tensorboard's ``EventFileWriter``). Per-step statistics go out as one
``Event`` per step holding every scalar of that step, encoded for a whole compiled call at once by
:class:`StepScalarEncoder`: building a tensor-based summary per scalar, or calling eager
``tf.summary.scalar``, costs ~0.5 ms a value.

This is the only module that knows the TensorBoard file format.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import summary as custom_scalar_summary
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.text import summary as text_summary

from trainkit import stats
from trainkit.background import SerialWorker, WorkerClosedError
from trainkit.errors import ArgumentError, RunDirError
from trainkit.runs import is_storage_error, storage_error_text

SPLITS = ("train", "validation")
EVENT_FILES = "events.out.tfevents.*"


def event_file_sizes(run_dir: str | Path) -> dict[str, int]:
    """The size in bytes of each event file under a run's ``train/`` and ``validation/``.

    A checkpoint records them (after :meth:`RunWriter.flush`), keyed by the path relative to
    ``run_dir``, so that a resumed run can drop what was logged after it
    (:func:`rewind_event_files`).
    """
    run_dir = Path(run_dir)
    return {f"{split}/{path.name}": path.stat().st_size for split in SPLITS for path in sorted((run_dir / split).glob(EVENT_FILES))}


def rewind_event_files(run_dir: str | Path, sizes: Mapping[str, int]) -> list[str]:
    """Puts a run's event files back as :func:`event_file_sizes` found them at a checkpoint.

    Each recorded file is cut back to its recorded size (a record boundary: the sizes were taken
    after a flush) and event files the record does not list, opened after the checkpoint, are
    deleted. The run resumed from that checkpoint logs those steps and epochs again: TensorBoard
    showed them twice, and a ``SessionLog.START`` purge cannot help, as ``train/`` holds both
    epoch- and step-indexed series.

    Returns:
        The recorded files (``train/events...``) that are gone or shorter than recorded: what
        they held before the checkpoint is lost to TensorBoard and ``trainkit diagnose``.
    """
    run_dir = Path(run_dir)
    for split in SPLITS:
        for path in (run_dir / split).glob(EVENT_FILES):
            size = sizes.get(f"{split}/{path.name}")
            if size is None:
                path.unlink(missing_ok=True)
            elif path.stat().st_size > size:
                os.truncate(path, size)
    return [name for name, size in sizes.items() if size and (not (run_dir / name).is_file() or (run_dir / name).stat().st_size < size)]


def trained_event_file(run_dir: str | Path) -> str | None:
    """The first of a run's ``train/`` event files that holds a trained step or epoch, if any.

    A run that stopped before its first checkpoint (an error, a NaN loss, ``checkpoint_every=0``)
    leaves no other trace of its steps; a file of the texts and layout a run writes before its
    first step (one that failed while it was traced) is no trained run.

    Returns:
        Its path relative to ``run_dir`` (``train/events...``), or ``None``.
    """
    import tensorflow as tf  # only for the C++ record reader

    run_dir = Path(run_dir)
    for path in sorted((run_dir / "train").glob(EVENT_FILES)):
        try:
            for record in tf.data.TFRecordDataset(str(path)):
                event = event_pb2.Event.FromString(record.numpy())
                if any(value.tag == step_tag("loss") or value.tag.startswith("epoch/") for value in event.summary.value):
                    return f"train/{path.name}"
        except tf.errors.OpError:  # a last record cut short by a kill: what came before it was read
            continue
    return None


def _check_split(split: str) -> None:
    """Refuses an unknown split where it is written, not on the writer thread: there it failed the
    next write of training itself, as a RuntimeError about something else."""
    if split not in SPLITS:
        raise ArgumentError("bad-argument", f"Unknown TensorBoard split {split!r}: write to one of {', '.join(SPLITS)}.")


def check_text(name: Any, markdown: Any) -> None:
    """Refuses a text summary that is not a name and a string where it is logged: on the writer
    thread it failed the next write of training itself, as a RuntimeError about something else
    (and the epoch values queued after it were lost)."""
    if not isinstance(name, str) or not name:
        raise ArgumentError("bad-argument", f"A TensorBoard text's name must be a non-empty string, got {name!r}.")
    if not isinstance(markdown, str):
        raise ArgumentError("bad-argument", f"The TensorBoard text {name!r} must be a string (markdown), got a {type(markdown).__name__}: "
                                            "format the value first, str(value) or f\"...\".")


def step_tag(name: str) -> str:
    """TensorBoard tag of a per-step scalar: grouped names keep their group, others go under step/."""
    return name if "/" in name else f"step/{name}"


def _own_summary(proto: Any) -> summary_pb2.Summary:
    """Re-reads a Summary built with TensorFlow's proto classes as tensorboard's own.

    tensorboard's ``pb()`` helpers return TensorFlow's classes when TensorFlow is installed; the
    two are wire-compatible but not interchangeable as Python objects.
    """
    if isinstance(proto, summary_pb2.Summary):
        return proto
    return summary_pb2.Summary.FromString(proto.SerializeToString())


def histogram_tag(kind: str, name: str) -> str:
    """``histograms/KIND/NAME``: ``histograms/weights/VAR``, ``.../gradients/VAR``, ``.../activations/L``."""
    return f"histograms/{kind}/{name}"


#: Charts of a layer's category in the custom-scalars layout: (title, statistic kind) for the
#: per-variable statistics (one line per variable), (title, statistics) for the activation ones.
_VARIABLE_CHARTS = (
    ("gradient norm", stats.GRAD_NORM),
    ("weight norm", stats.WEIGHT_NORM),
    ("update / weight ratio", stats.UPDATE_RATIO),
    ("non-finite gradient entries", stats.GRAD_NONFINITE),
)
_ACTIVATION_CHARTS = (
    ("activation mean and std", (stats.MEAN, stats.STD)),
    ("dead units and outputs <= 0", (stats.DEAD_FRACTION, stats.NONPOSITIVE_FRACTION)),
    ("saturated outputs", (stats.SATURATED_FRACTION,)),
    ("non-finite activations", (stats.NONFINITE,)),
)


def _exact(tag: str) -> str:
    # Chart tags are regular expressions: anchor them so dense/kernel never matches dense_1/kernel.
    return f"^{re.escape(tag)}$"


def _chart(title: str, tags: Sequence[str]) -> layout_pb2.Chart:
    return layout_pb2.Chart(title=title, multiline=layout_pb2.MultilineChartContent(tag=[_exact(t) for t in tags]))


def stats_layout(names: Sequence[str]) -> layout_pb2.Layout:
    """Custom-scalars layout for a step's scalar names: an overview, then one category per layer.

    A layer's category puts its charts side by side: gradient norm, weight norm, update/weight
    ratio and non-finite gradients (one line per variable), then its activation statistics.
    """
    overview = [_chart(title, [step_tag(n)]) for title, n in (("loss", stats.LOSS), ("learning rate", stats.LEARNING_RATE), ("global gradient norm", stats.GLOBAL_GRAD_NORM)) if n in names]
    by_layer: dict[str, list[stats.StatName]] = {}
    for name in names:
        parsed = stats.parse_stat_name(name)
        if parsed is None or name == stats.GLOBAL_GRAD_NORM:
            continue
        by_layer.setdefault(parsed.layer, []).append(parsed)
    _merge_nested_activations(by_layer)
    categories = [layout_pb2.Category(title="overview", chart=overview)] if overview else []
    for layer, parsed_names in by_layer.items():
        charts = []
        for title, kind in _VARIABLE_CHARTS:
            tags = [f"{p.kind}/{p.target}" for p in parsed_names if p.kind == kind]
            if tags:
                charts.append(_chart(title, tags))
        for title, wanted in _ACTIVATION_CHARTS:
            tags = [stats.activation_stat_name(p.target, p.stat) for p in parsed_names if p.kind == stats.ACTIVATION and p.stat in wanted]
            if tags:
                charts.append(_chart(title, tags))
        categories.append(layout_pb2.Category(title=f"layer {layer}", chart=charts))
    return layout_pb2.Layout(category=categories)


def _merge_nested_activations(by_layer: dict[str, list[stats.StatName]]) -> None:
    """Moves a nested layer's activation statistics into its variables' category, in place.

    A layer inside a nested model names its variables by path (``block/dense/kernel``) and its
    activations by its own name (``activation/dense/mean``): each such layer had two categories,
    its gradient charts in ``layer block/dense`` and its activation charts in ``layer dense``.
    Merged only where one variable path ends in the layer's name (two blocks' ``dense`` stay apart)
    and that path has no activation statistics of its own: a nested layer whose name another layer
    also has names its activations by path (``activation/block/dense/mean``), so an ``activation/dense``
    beside them is that other layer's (a top-level ``Activation`` named ``dense``), and merged it
    drew its lines in the nested layer's charts and lost its own category.
    """
    with_variables = [layer for layer, names in by_layer.items()
                      if any(p.kind != stats.ACTIVATION for p in names) and not any(p.kind == stats.ACTIVATION for p in names)]
    for layer in [layer for layer, names in by_layer.items() if all(p.kind == stats.ACTIVATION for p in names)]:
        paths = [path for path in with_variables if path.endswith(f"/{layer}")]
        if len(paths) == 1:
            by_layer[paths[0]].extend(by_layer.pop(layer))


def custom_scalars_layout(names: Sequence[str]) -> Any:
    """The :func:`stats_layout` of ``names`` as a ``Summary`` for :meth:`RunWriter.summary`."""
    return custom_scalar_summary.pb(stats_layout(names))


def epoch_tag(name: str) -> str:
    """TensorBoard tag of an epoch value; train and validation share it so their curves overlay."""
    return f"epoch/{name.removeprefix('val_')}"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class StepScalarEncoder:
    """Encodes rows of per-step scalars straight into ``Event`` protobuf bytes, vectorised.

    Every step of a run carries the same tags, so the bytes of a step's ``Summary`` are a fixed
    template with the float32 values at fixed offsets: numpy fills a whole compiled call's rows
    at once. ~1 us a step (45 scalars), where building ``Summary.Value`` objects costs ~30 us.

    Args:
        tags: The tags, one per column of the rows to encode.
    """

    def __init__(self, tags: Sequence[str]) -> None:
        template, offsets = bytearray(), []
        for tag in tags:
            name = tag.encode()
            value = b"\x0a" + _varint(len(name)) + name + b"\x15"  # Value.tag, Value.simple_value
            template += b"\x0a" + _varint(len(value) + 4) + value  # Summary.value
            offsets.append(len(template))
            template += b"\x00\x00\x00\x00"
        self.tags = tuple(tags)
        self._template = np.frombuffer(bytes(template), np.uint8)
        self._float_bytes = (np.asarray(offsets)[:, None] + np.arange(4)).ravel()
        self._summary_header = b"\x2a" + _varint(len(template))  # Event.summary

    def encode(self, first_step: int, values: np.ndarray, every: int = 1, wall_times: tuple[float, float] | None = None,
               keep_last: bool = False) -> list[bytes]:
        """One serialized ``Event`` per step ``first_step + i`` that is a multiple of ``every``.

        Args:
            first_step: The global step of ``values[0]``.
            values: ``[steps, len(tags)]`` scalars.
            every: Keep only the steps that are multiples of this (none may be: no events).
            wall_times: When the steps began and ended; each step's wall time is spread evenly
                in between (a compiled call returns all its steps at once). Now, by default.
            keep_last: Keep the last step too, whatever ``every``.
        """
        values = np.asarray(values, np.float32).reshape(-1, len(self.tags))
        offsets = np.arange(values.shape[0])
        keep = (first_step + offsets) % every == 0
        if keep_last and len(keep):
            keep[-1] = True
        offsets, values = offsets[keep], values[keep]
        began, ended = wall_times if wall_times is not None else (time.time(),) * 2
        times = began + (ended - began) * (offsets + 1) / max(len(keep), 1)
        rows = np.tile(self._template, (len(offsets), 1))
        rows[:, self._float_bytes] = values.astype("<f4").view(np.uint8).reshape(len(offsets), len(self._float_bytes))
        return [b"\x09" + struct.pack("<d", wall) + b"\x10" + _varint(first_step + int(offset)) + self._summary_header + row.tobytes()
                for offset, wall, row in zip(offsets, times, rows, strict=True)]


@functools.cache
def _histogram_metadata() -> summary_pb2.SummaryMetadata:
    """The histogram plugin's metadata, the same for every histogram (built once)."""
    return histogram_metadata.create_summary_metadata(display_name=None, description=None)


def _float64_tensor(array: np.ndarray) -> tensor_pb2.TensorProto:
    """``array`` as a float64 ``TensorProto`` (what ``tensor_util.make_tensor_proto`` builds,
    without its ~50 us a call of type checks: 16 histograms an epoch were ~1 ms of worker time)."""
    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in array.shape]
    return tensor_pb2.TensorProto(dtype=types_pb2.DT_DOUBLE, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims), tensor_content=np.ascontiguousarray(array, "<f8").tobytes())


_file_ids = itertools.count()


class RecordEventWriter:
    """An events file written by TensorFlow's C++ TFRecord writer.

    The same file (name pattern, records, first ``file_version`` event) as tensorboard's
    ``EventFileWriter``, whose pure-Python CRC32C costs ~0.45 us a byte (~1 ms for one step's 45
    scalars) and would bound per-step logging at ~1000 steps/s. Used from one thread; flushed after
    every batch of events so TensorBoard sees them while training runs.

    Args:
        logdir: The directory of the file (created if missing).
    """

    def __init__(self, logdir: str | Path) -> None:
        import tensorflow as tf  # only for the C++ record writer

        Path(logdir).mkdir(parents=True, exist_ok=True)
        # The counter zero-padded: TensorBoard (and trainkit diagnose) read a directory's event
        # files in name order, and a trainer's second fit opening its file in the same second
        # as the first, ".10" sorted before ".9": the later fit's steps read first, the earlier
        # fit's then purged them as a restart (readback gave the first fit's findings).
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_file_ids):08d}"
        self.path = Path(logdir) / name
        self._writer = tf.io.TFRecordWriter(str(self.path))
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def add_event(self, event: event_pb2.Event) -> None:
        """Writes one event and flushes."""
        self._writer.write(event.SerializeToString())
        self._writer.flush()

    def write_records(self, records: Sequence[bytes]) -> None:
        """Writes already serialized events and flushes once."""
        for record in records:
            self._writer.write(record)
        self._writer.flush()

    def flush(self) -> None:
        """Flushes buffered events to the file."""
        self._writer.flush()

    def close(self) -> None:
        """Flushes and closes the file."""
        self._writer.close()


class RunWriter:
    """Writes one run's ``train/`` and ``validation/`` event files from a background thread.

    Args:
        run_dir: The run directory; ``train/`` and ``validation/`` are created under it.
        scalars_every: Write per-step scalars every this many steps.
    """

    def __init__(self, run_dir: str | Path, *, scalars_every: int = 1) -> None:
        self.run_dir = Path(run_dir)
        self.scalars_every = max(1, int(scalars_every))
        # validation/ is opened with its first event: a run without validation data would
        # otherwise list an empty "validation" run in TensorBoard.
        self._writers: dict[str, RecordEventWriter] = {}
        # Surfaced as the writer thread's failures are: a disk with room for the run's first files
        # but not its first event ended in TensorFlow's ResourceExhaustedError traceback.
        self._surface(lambda: self._writers.setdefault("train", RecordEventWriter(self.run_dir / "train")))
        self._encoders: dict[tuple[str, ...], StepScalarEncoder] = {}
        self._worker = SerialWorker("trainkit-tensorboard")

    # -- public API (training thread) -------------------------------------------------------------
    def step_scalars(self, first_step: int, names: Sequence[str], values: np.ndarray, wall_times: tuple[float, float] | None = None,
                     *, keep_last: bool = False) -> None:
        """Queues per-step scalars: ``values[i, j]`` is scalar ``names[j]`` at step ``first_step + i``.

        ``wall_times``: when the steps began and ended (``time.time()``), spread over the steps
        for TensorBoard's relative and wall-time axes; the time of queueing by default.
        ``keep_last``: write the last step even when ``scalars_every`` skips it (the step that
        stopped the run).
        """
        wall_times = wall_times or (time.time(),) * 2
        self._put(lambda: self._write_step_scalars(first_step, tuple(names), np.asarray(values), wall_times, keep_last))

    def scalars(self, split: str, step: int, values: Mapping[str, float], *, tag: Callable[[str], str] = epoch_tag) -> None:
        """Queues a group of scalars at one step (epoch values by default)."""
        _check_split(split)
        items = {tag(k): float(v) for k, v in values.items()}
        wall_time = time.time()
        self._put(lambda: self._add(split, step, [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in items.items()], wall_time))

    def bucketed_histograms(self, split: str, step: int, buckets: Mapping[str, np.ndarray]) -> None:
        """Queues histograms already counted into ``[k, 3]`` ``(left, right, count)`` buckets.

        TensorBoard 2's tensor format, each under exactly its name as tag (the legacy format
        appends ``/histogram_summary`` to every tag). The buckets are counted in the graph
        (:func:`trainkit.stats.histograms`), so the writer only encodes them.
        """
        _check_split(split)
        buckets = {k: np.asarray(v, dtype=np.float64) for k, v in buckets.items()}
        for name, table in buckets.items():
            if table.ndim != 2 or table.shape[1] != 3:
                # Written as it was, TensorBoard showed nothing (or garbage) for it, in silence.
                raise ArgumentError("bad-argument", f"The histogram {name!r} must be [k, 3] buckets of (left edge, right edge, count), got shape "
                                                    f"{table.shape}: count raw values with np.histogram(values, bins=k) and stack the edges and "
                                                    "counts, or give the values to tf.summary.histogram.")

        wall_time = time.time()

        def write() -> None:
            metadata = _histogram_metadata()
            values = [summary_pb2.Summary.Value(tag=name, metadata=metadata, tensor=_float64_tensor(table)) for name, table in buckets.items()]
            self._add(split, step, values, wall_time)

        self._put(write)

    def text(self, split: str, step: int, name: str, markdown: str) -> None:
        """Queues a text summary (rendered as markdown by TensorBoard)."""
        _check_split(split)
        check_text(name, markdown)
        wall_time = time.time()
        self._put(lambda: self._add(split, step, list(_own_summary(text_summary.pb(name, markdown)).value), wall_time))

    def summary(self, split: str, step: int, proto: Any) -> None:
        """Queues a ready-made ``Summary`` protobuf (HParams, custom-scalar layouts, ...)."""
        _check_split(split)
        if "value" not in getattr(getattr(proto, "DESCRIPTOR", None), "fields_by_name", {}):
            # Checked here, as the text is: on the writer thread it failed training's next write.
            raise ArgumentError("bad-argument", f"summary() takes a Summary protobuf (tensorboard's or TensorFlow's), got a {type(proto).__name__}.")
        wall_time = time.time()
        self._put(lambda: self._add(split, step, list(_own_summary(proto).value), wall_time))

    def flush(self) -> None:
        """Blocks until everything queued so far is on disk."""

        def flush_all() -> None:
            for writer in self._writers.values():
                writer.flush()

        self._put(flush_all)
        self._surface(self._worker.wait)

    def close(self) -> None:
        """Writes everything still queued, closes the files and stops the thread."""
        try:
            self._surface(self._worker.close)
        finally:
            for writer in self._writers.values():
                writer.close()

    def lost_files(self) -> list[Path]:
        """The event files this writer opened that are no longer on disk (their directory deleted
        or moved while the run trained): the open handles wrote on into nothing, with no error."""
        return [writer.path for writer in self._writers.values() if not writer.path.exists()]

    # -- background thread ------------------------------------------------------------------------
    def _put(self, job: Callable[[], None]) -> None:
        self._surface(lambda: self._worker.submit(job))

    @staticmethod
    def _surface(call: Callable[[], None]) -> None:
        """Runs ``call``, reporting a failed write as what it is."""
        try:
            call()
        except WorkerClosedError:
            raise ArgumentError("writer-closed", "This TensorBoard writer is closed: fit closes trainer.writer when it ends. "
                                                 "Write from a callback while training.") from None
        except Exception as err:
            if not is_storage_error(err):
                raise RuntimeError(f"Writing TensorBoard events failed: {err}") from err
            # A full disk, a directory made read-only or deleted: the user's to fix.
            raise RunDirError("logdir-unwritable", f"Writing TensorBoard events failed: {storage_error_text(err)}. Free space or fix the directory, then continue "
                                                   "the run from its last checkpoint (--resume RUN_DIR, or fit(..., resume=True)), or "
                                                   "train it again if it stopped before its first one.") from err

    def _add(self, split: str, step: int, values: list[summary_pb2.Summary.Value], wall_time: float) -> None:
        # The time it was queued, not written: the thread writes between the next compiled call's
        # steps, and every epoch's values were stamped after the next epoch's first step.
        event = event_pb2.Event(wall_time=wall_time, step=int(step), summary=summary_pb2.Summary(value=values))
        self._split_writer(split).add_event(event)

    def _split_writer(self, split: str) -> RecordEventWriter:
        if split not in self._writers:
            self._writers[split] = RecordEventWriter(self.run_dir / split)
        return self._writers[split]

    def _write_step_scalars(self, first_step: int, names: tuple[str, ...], values: np.ndarray, wall_times: tuple[float, float], keep_last: bool) -> None:
        # One Event per step holding every scalar of the step, encoded for a whole call at once.
        encoder = self._encoders.get(names)
        if encoder is None:
            encoder = self._encoders[names] = StepScalarEncoder([step_tag(n) for n in names])
        self._writers["train"].write_records(encoder.encode(first_step, values, self.scalars_every, wall_times, keep_last))
