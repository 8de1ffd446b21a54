"""The terminal: a progress bar per epoch, one line per epoch, the final summary.

The only module that prints during training. Uses ``rich`` (already installed with ``typer``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
from collections.abc import Iterator, Mapping
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from trainkit.callbacks.base import Callback
from trainkit.loop import StepOutputs


def four_digits(value: float) -> str:
    """4 significant digits, trailing zeros kept (``0.1000``, not ``0.1``) so that epoch lines stay
    aligned, and no bare point (``1234``, not ``1234.``)."""
    text = f"{value:#.4g}"
    return text[:-1] if text.endswith(".") else text


def format_logs(logs: Mapping[str, float]) -> str:
    """``loss 0.4321  accuracy 0.8125  val_loss ...`` (see :func:`four_digits`)."""
    return "  ".join(f"{k} {four_digits(v)}" for k, v in logs.items())


def draws_live(console: Console) -> bool:
    """Whether ``console`` can redraw a bar in place: a terminal, or a Jupyter notebook with
    ``ipywidgets`` (rich draws its live display into an output widget there; without one it
    warns at every refresh and draws nothing)."""
    return console.is_terminal or (console.is_jupyter and importlib.util.find_spec("ipywidgets") is not None)


class ConsoleLogger(Callback):
    """Shows a progress bar while an epoch runs and prints one summary line per epoch.

    Args:
        console: Where to print; defaults to stderr so stdout stays clean for reports.
        progress_bar: Whether to show the bar (``fit(verbose=2)``: the epoch lines only).
    """

    def __init__(self, console: Console | None = None, progress_bar: bool = True) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.progress_bar = progress_bar
        self._progress: Progress | None = None
        self._task: Any = None
        self._seen_rows = 0
        self._loss_sum = 0.0
        self._started = 0.0

    @contextlib.contextmanager
    def preparing(self) -> Iterator[None]:
        """A transient spinner while ``fit`` prepares, where the bar would be drawn.

        Before the first epoch's bar, ``fit`` converts in-memory arrays, runs the data checks and
        builds the model: ~20 s of silence for 2.4 GB of rows (the bar then shows the tracing).
        """
        if not self.progress_bar or not draws_live(self.console):
            yield
            return
        with self.console.status("preparing: reading and checking the data, building the model", spinner="dots"):
            yield

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._seen_rows, self._loss_sum, self._started = 0, 0.0, time.perf_counter()
        if not self.progress_bar or not draws_live(self.console):  # a bar in a log file is noise: keep the epoch lines only
            return
        self._progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{self.trainer.epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._task = self._progress.add_task("train", total=self.trainer.steps_per_epoch, loss="")
        self._progress.start()

    def on_execution_end(self, first_step: int, outputs: StepOutputs) -> None:
        if self._progress is None or "loss" not in outputs.names:
            return
        losses = outputs.as_dict()["loss"]
        self._seen_rows += int(outputs.batch_sizes.sum())
        self._loss_sum += float((losses * outputs.batch_sizes).sum())
        running = self._loss_sum / max(self._seen_rows, 1)
        self._progress.update(self._task, advance=outputs.steps, loss=f"loss {four_digits(running)}")

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        seconds = time.perf_counter() - self._started
        self.console.print(f"epoch {epoch + 1}/{self.trainer.epochs}  {format_logs(logs)}  ({seconds:.1f}s)", soft_wrap=True)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class RunProgress(Callback):
    """One transient bar over a whole run's epochs, for runs that print no epoch lines.

    ``trainkit compare`` trains its runs quietly (one line each when it starts and ends); in a
    terminal (or a notebook with ``ipywidgets``, see :func:`draws_live`) this bar shows where the
    current run is, ``[2/6] lr=0.01  epoch 13/30  loss 0.41``. Elsewhere it prints nothing.

    Args:
        label: What the bar is about (the run's name).
        console: Where to draw; defaults to stderr.
    """

    def __init__(self, label: str, console: Console | None = None) -> None:
        self.label = label
        self.console = console or Console(stderr=True, highlight=False)
        self._progress: Progress | None = None
        self._task: Any = None

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if not draws_live(self.console):
            return
        self._progress = Progress(
            TextColumn(self.label),
            BarColumn(),
            TextColumn("{task.fields[epoch]}"),
            TextColumn("{task.fields[values]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        done = len(self.trainer.history.epoch)  # a resumed run starts where it was
        self._task = self._progress.add_task("run", total=max(self.trainer.epochs, 1), completed=done, epoch=f"epoch {done}/{self.trainer.epochs}", values="")
        self._progress.start()

    def on_execution_end(self, first_step: int, outputs: StepOutputs) -> None:
        steps = self.trainer.steps_per_epoch
        if self._progress is not None and steps:
            self._progress.advance(self._task, outputs.steps / steps)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        if self._progress is None:
            return
        shown = {k: v for k, v in logs.items() if k in ("loss", "val_loss")}
        self._progress.update(self._task, completed=epoch + 1, epoch=f"epoch {epoch + 1}/{self.trainer.epochs}", values=format_logs(shown))

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
