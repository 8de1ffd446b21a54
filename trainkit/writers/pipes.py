"""Standard output and error that outlive their reader.

``trainkit train recipe.yaml 2>&1 | head`` closes the pipe after a few lines. Python then raises
``BrokenPipeError`` from the next epoch line, deep inside a training callback, which aborted the
run half-written: no final checkpoint, no report. The command line wraps both streams
(:func:`survive_closed_pipes`) so that the first write to a closed pipe points that stream at
``os.devnull``, as Python's documentation on SIGPIPE advises, and the command carries on: the run
is written as if nobody had stopped reading.
"""

from __future__ import annotations

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

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._buffer: ClosedPipeSafe | None = None
        #: Whether a write found the pipe closed; everything since went nowhere.
        self.reader_gone = False

    def write(self, text: Any) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except OSError as err:
                self._discard_after(err)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as err:
            self._discard_after(err)

    def _discard_after(self, err: OSError) -> None:
        """Sends the stream to ``os.devnull`` from now on when ``err`` says its pipe closed."""
        if not isinstance(err, BrokenPipeError) and err.errno != errno.EPIPE:
            raise err
        self.reader_gone = True
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
    """Wraps ``sys.stdout`` and ``sys.stderr`` in :class:`ClosedPipeSafe` (once)."""
    if not isinstance(sys.stdout, ClosedPipeSafe):
        sys.stdout = ClosedPipeSafe(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, ClosedPipeSafe):
        sys.stderr = ClosedPipeSafe(sys.stderr)  # type: ignore[assignment]
