"""Ctrl-C and SIGTERM become a request to stop cleanly between compiled calls.

The first signal only sets a flag; the trainer checks it after each compiled call, writes a
checkpoint, flushes TensorBoard and the report, and raises
:class:`~trainkit.errors.TrainingInterrupted`. A second Ctrl-C while that is under way raises
``KeyboardInterrupt`` at once, for a user who really wants out.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

# Shell convention: 128 + signal number.
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopRequest:
    """Records the first stop signal received while training."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None

    @property
    def requested(self) -> bool:
        """True once SIGINT or SIGTERM arrived."""
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        """130 for SIGINT, 143 for SIGTERM."""
        return EXIT_CODES.get(self.signal, 130) if self.signal is not None else 0


class SecondInterrupt(KeyboardInterrupt):
    """A second Ctrl-C while a stop is under way (see :func:`stop_on_signals`), told apart from a
    first one that came before training took over the signals (a resume reading its checkpoint,
    tracing), which was called "a second Ctrl-C" too."""


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turns SIGINT/SIGTERM into a :class:`StopRequest` for the duration of the block.

    Outside the main thread (where Python cannot install handlers) the request simply never fires.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if request.requested and signum == signal.SIGINT:
            raise SecondInterrupt
        request.signal = signal.Signals(signum)

    previous = {sig: signal.signal(sig, handle) for sig in EXIT_CODES}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            # None: the handler was installed outside Python and cannot be put back; Python's
            # own default beats leaving ours, which would ignore the signal from now on.
            if handler is None:
                handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            signal.signal(sig, handler)


_terminated = threading.Event()


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an interruption (see :func:`sigterm_as_interrupt`): caught where Ctrl-C
    is, and told apart from it for the exit code (143, not 130)."""


def sigterm_as_interrupt() -> Any:
    """Makes SIGTERM raise :class:`Terminated`, as Ctrl-C raises ``KeyboardInterrupt``, until
    :func:`restore_sigterm`: outside :func:`stop_on_signals`, its default kills the process with no
    chance to clean up (a run directory half made, a TensorBoard child left behind).

    Returns:
        The previous handler, for :func:`restore_sigterm` (``None`` outside the main thread).
    """

    def terminate(signum: int, frame: FrameType | None) -> None:
        _terminated.set()
        raise Terminated

    try:
        return signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: handlers cannot be set there
        return None


def terminated() -> bool:
    """Whether :func:`sigterm_as_interrupt`'s handler has raised :class:`Terminated` in this process.

    typer turns any ``KeyboardInterrupt`` a command lets out into exit code 130 without a word,
    :class:`Terminated` included: this tells the CLI it was SIGTERM (exit 143).
    """
    return _terminated.is_set()


def forget_termination() -> None:
    """Clears what :func:`terminated` reports, at the start of a command: a SIGTERM that ended an
    earlier command of the same process (tests, a notebook calling the CLI) is not this one's."""
    _terminated.clear()


def restore_sigterm(previous: Any) -> None:
    """Puts back the SIGTERM handler :func:`sigterm_as_interrupt` replaced."""
    # None: a handler installed outside Python (which cannot be put back), or none replaced
    # outside the main thread, where setting one fails again.
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
