"""Standard output and error that outlive their reader, and their disk.

``trainkit train recipe.yaml 2>&1 | head`` closes the pipe after a few lines. Python then raises
``BrokenPipeError`` from the next epoch line, deep inside a training callback, which aborted the
run half-written: no final checkpoint, no report. The command line wraps both streams
(:func:`survive_closed_pipes`) so that the first write to a closed pipe points that stream at
``os.devnull``, as Python's documentation on SIGPIPE advises, and the command carries on: the run
is written as if nobody had stopped reading.

Any other failed write (``2> train.log`` on a full disk, a stream closed with ``>&-``) is no
reason to lose the run either: the stream goes to ``os.devnull`` the same way, but the failure is
kept (:func:`lost_output`) for the command to report once it has finished, with a non-zero exit
code, since what it printed there is gone.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from typing import Any, TextIO


class ClosedPipeSafe:
    """A text stream whose writes never fail because the reading end of its pipe went away.

    Args:
        stream: The stream to write through (``sys.stdout``, ``sys.stderr``).

    Every other attribute (``isatty``, ``encoding``, ``fileno``...) is the wrapped stream's.
    """

    def __init__(self, stream: TextIO, *, lost: OSError | None = None) -> None:
        self._stream = stream
        self._buffer: ClosedPipeSafe | None = None
        #: Whether a write found the pipe closed; everything since went nowhere.
        self.reader_gone = False
        #: A failure other than a closed pipe (a full disk, say) that sent the stream nowhere.
        self.lost: OSError | None = None
        #: Why a stream that stands in for a closed one (``>&-``) is lost once written to.
        self._lost_on_write = lost

    def write(self, text: Any) -> int:
        if self._lost_on_write is not None and text and self.lost is None:
            self.lost = self._lost_on_write
        if not self.reader_gone and self.lost is None:
            try:
                return self._stream.write(text)
            except OSError as err:
                self._discard_after(err)
        return len(text)

    @property
    def failure(self) -> OSError | None:
        """What sent the stream, or the byte buffer under it, nowhere (other than a closed pipe)."""
        return self.lost or (self._buffer.lost if self._buffer is not None else None)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as err:
            self._discard_after(err)

    def _discard_after(self, err: OSError) -> None:
        """Sends the stream to ``os.devnull`` from now on; a failure other than a closed pipe is
        kept in :attr:`lost` for the command to report when it ends. Raising it instead would end
        a run in the epoch line that hit it (a full disk under ``2> log``), its report "failed"."""
        if isinstance(err, BrokenPipeError) or err.errno == errno.EPIPE:
            self.reader_gone = True
        elif self.lost is None:
            self.lost = err
        try:
            descriptor = self._stream.fileno()
        except (io.UnsupportedOperation, AttributeError, ValueError):
            return  # not backed by a descriptor: writes are dropped by reader_gone
        # The descriptor itself, not only this object: TensorFlow's C++ logs and Python's own
        # flush at exit write to it too, and the unwritten buffer then drains into devnull.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, descriptor)
        finally:
            os.close(devnull)

    @property
    def buffer(self) -> ClosedPipeSafe:
        """The binary stream beneath, just as safe: click writes to it directly when the text
        stream's encoding is ASCII (``PYTHONIOENCODING=ascii``, a C locale)."""
        if self._buffer is None:
            self._buffer = ClosedPipeSafe(self._stream.buffer)  # type: ignore[arg-type]
        return self._buffer

    def __getattr__(self, name: str) -> Any:
        if name == "_stream":  # not set yet (an object made without __init__, by copy say)
            raise AttributeError(name)
        return getattr(self._stream, name)


def survive_closed_pipes() -> None:
    """Wraps ``sys.stdout`` and ``sys.stderr`` in :class:`ClosedPipeSafe` (once).

    A standard descriptor closed when the process started (``trainkit train r.yaml 2>&-``) is
    opened on ``os.devnull`` first: else the next file opened (a checkpoint, an event file) would
    get its number, and TensorFlow's C++ log lines, which write to descriptor 2, would land in it.
    Python leaves ``sys.stdout`` / ``sys.stderr`` ``None`` then; a stand-in on ``os.devnull``
    records the loss once something is written to it.
    """
    for descriptor, mode in ((0, os.O_RDONLY), (1, os.O_WRONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(descriptor)
        except OSError:
            devnull = os.open(os.devnull, mode)
            if devnull != descriptor:
                os.dup2(devnull, descriptor)
                os.close(devnull)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, ClosedPipeSafe):
            continue
        if stream is None:
            closed = OSError(errno.EBADF, "it was closed when the command started")
            wrapped = ClosedPipeSafe(open(os.devnull, "w", encoding="utf-8"), lost=closed)  # noqa: SIM115 (lives as long as the process)
        else:
            wrapped = ClosedPipeSafe(stream)
        setattr(sys, name, wrapped)


def lost_output() -> dict[str, OSError]:
    """The standard streams (``"standard output"``, ``"standard error"``) whose writes failed for a
    reason other than a reader that stopped reading, with that failure."""
    lost = {}
    for name, stream in (("standard output", sys.stdout), ("standard error", sys.stderr)):
        if isinstance(stream, ClosedPipeSafe):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()  # what is still buffered fails now, not unseen at exit
            failure = stream.failure
            if failure is not None:
                lost[name] = failure
    return lost
