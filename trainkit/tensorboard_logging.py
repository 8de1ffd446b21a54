"""What a :class:`~trainkit.trainer.Trainer` writes to its run's TensorBoard events, and when.

The writer opens when ``fit`` starts (the texts logged so far and the HParams record go first) and
closes when it ends; between them come the custom-scalars layout, each epoch's values, and the
probe batch's histograms (:mod:`trainkit.histograms`). The per-step scalars are written by the
epoch loop as each compiled call returns. The event files' format is
:mod:`trainkit.writers.tensorboard`'s.

:class:`TensorBoardLogging` is a mixin rather than an object of its own: ``trainer.writer`` is
public (callbacks write through it), and what goes into the events is read off the trainer's
settings, metrics and training loop.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

from trainkit.errors import RunDirError
from trainkit.histograms import ProbeHistograms
from trainkit.history import numeric_logs
from trainkit.loop import CompiledLoop
from trainkit.runs import is_storage_error, storage_error_text
from trainkit.writers.hparams import FILE_SUFFIX as HPARAMS_SUFFIX
from trainkit.writers.hparams import write_hparams, write_session_end
from trainkit.writers.tensorboard import RunWriter, custom_scalars_layout


class TensorBoardLogging:
    """Opens, writes and closes the run's TensorBoard writer, mixed into the Trainer."""

    logdir: Path | None
    is_chief: bool
    scalars_every: int
    statistics: bool
    histograms_every: int | str | None
    hparams: dict[str, Any] | None
    step: int
    optimizer: keras.optimizers.Optimizer
    _metrics: list[keras.metrics.Metric]
    _output_loss_trackers: list[keras.metrics.Mean]
    _train_loop: CompiledLoop | None
    #: The run's event writer while ``fit`` runs (only the chief's); ``None`` otherwise.
    writer: RunWriter | None
    #: Texts :meth:`~trainkit.trainer.Trainer.log_text` was given, written when the writer opens.
    _pending_texts: dict[str, str]
    _histograms: ProbeHistograms

    def _open_writer(self, *, hparams: bool = True, resumed: bool = False) -> None:
        """Opens the run's TensorBoard writer, with the pending texts and (``hparams``) the HParams record.

        A resumed run writes its texts at the step it resumes from (at 0 they doubled the run's
        first ones), and its HParams record only when its settings changed (more epochs): the
        record is then replaced, as TensorBoard reads the first one of a run only.
        """
        if self.logdir is None or self.writer is not None or not self.is_chief:
            return
        try:
            self.logdir.mkdir(parents=True, exist_ok=True)
            probe = self.logdir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as err:
            raise RunDirError("logdir-unwritable", f"Cannot write the run directory {self.logdir}: {err.strerror or err}. Pass a writable logdir (--logdir on the command line).") from None
        self.writer = RunWriter(self.logdir, scalars_every=self.scalars_every)
        step = self.step if resumed else 0
        for name, markdown in self._pending_texts.items():
            self.writer.text("train", step, name, markdown)
        if self.hparams and hparams:
            older = list(self.logdir.glob(f"events.out.tfevents.*{HPARAMS_SUFFIX}")) if resumed else []
            try:
                written = write_hparams(self.logdir, self.hparams, ["loss", *(m.name for m in (*self._output_loss_trackers, *self._metrics))])
            except Exception as err:
                if not is_storage_error(err):
                    raise
                # A disk that fills here failed the run with TensorFlow's ResourceExhaustedError traceback.
                raise RunDirError("logdir-unwritable", f"Cannot write the run's hyperparameters into {self.logdir}: {storage_error_text(err)}. "
                                                       "Free space or fix the directory, then run it again.") from err
            for old in older:  # after the new one is written: a crash in between loses no record
                if old != written:
                    old.unlink(missing_ok=True)

    def _write_layout(self) -> None:
        """Writes the custom-scalars layout (one category per layer) once per run."""
        if self.writer is None or not self.statistics or self._train_loop is None or self._train_loop.names is None:
            return
        self.writer.summary("train", 0, custom_scalars_layout(self._train_loop.names))

    def _wants_histograms(self) -> bool:
        return self.histograms_every is not None and self.logdir is not None

    def _write_histograms(self, step: int) -> None:
        """Queues histograms of weights, gradients and activations at ``step``."""
        if self.writer is None or self._histograms.batch is None:
            return
        self.writer.bucketed_histograms("train", step, self._histograms.buckets())

    def _write_epoch(self, epoch: int, logs: Mapping[str, float], learning_rate: float | None) -> None:
        """Queues an epoch's values; ``learning_rate`` is its last update's, read before the callbacks ran."""
        if self.writer is None or learning_rate is None:
            return
        logs = numeric_logs(logs)  # a callback may have added text to them
        train = {k: v for k, v in logs.items() if not k.startswith("val_")}
        train["learning_rate"] = learning_rate
        self.writer.scalars("train", epoch, train)
        validation = {k: v for k, v in logs.items() if k.startswith("val_")}
        if validation:
            self.writer.scalars("validation", epoch, validation)

    def _last_update_learning_rate(self) -> float:
        """The learning rate of the last update, as ``step/learning_rate`` shows it.

        ``optimizer.learning_rate`` evaluates a schedule at the optimizer's iteration count, which
        the last update moved on by one: the epoch's chart was one epoch ahead of its steps'.
        """
        # A LossScaleOptimizer (mixed_float16) holds a rate of its own, unused: the schedule is
        # its inner optimizer's, and read through it the chart was one epoch ahead again.
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        schedule = getattr(inner, "_learning_rate", None)
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            return float(schedule(max(int(self.optimizer.iterations.numpy()) - 1, 0)))
        return float(np.asarray(self.optimizer.learning_rate))

    def _write_run_end(self, stop_reason: str | None) -> None:
        """How the run ended, for the HParams dashboard's status column (see :func:`write_session_end`)."""
        if self.logdir is None or not self.is_chief or not self.hparams:
            return
        try:
            write_session_end(self.logdir, stop_reason)
        except Exception as err:
            # TensorFlow's errors too (the record goes through tf.io.gfile): a disk full at a good
            # run's very end failed it with a ResourceExhaustedError traceback.
            if not is_storage_error(err):
                raise
            raise RunDirError("logdir-unwritable", f"Cannot write the run's end record into {self.logdir}: {storage_error_text(err)}. Free space or fix "
                                                   "the directory: until the run is resumed (--resume RUN_DIR, or fit(..., resume=True)), "
                                                   "TensorBoard's HParams dashboard shows no status for it.") from err

    def _close_writer(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()
            lost = writer.lost_files()
            if lost:
                # Deleting the run directory mid-run raised nothing: a Python fit ended as if its
                # events were all written (only the CLI noticed, and only for train/).
                names = " and ".join(sorted({path.parent.name + "/" for path in lost}))
                print(f"warning: [run-dir-changed] {writer.run_dir} lost its TensorBoard events ({names}) while the run trained: "
                      "they were deleted or moved, and what was written to them after that is gone too.", file=sys.stderr)
