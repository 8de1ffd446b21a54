"""One process at a time in a run directory: an advisory lock held while ``fit`` writes there.

Two processes training into one directory (a resume started twice, or while the run it resumes
is still training) interleave their checkpoints, journal lines and TensorBoard events: a run
with every step logged twice, or a checkpoint whose journal lacks its records. ``fit`` takes an
exclusive ``flock`` on ``<logdir>/.trainkit.lock`` first; the second process gets
``run-dir-in-use``. The kernel drops the lock with the process, however it ends (``kill -9``
included), so a killed run never leaves a stale lock to clean up by hand.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from trainkit.errors import RunDirError
from trainkit.runs import os_error_reason

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there go unguarded
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".trainkit.lock"
#: Tries at the lock before a fit is refused, this far apart: ``trainkit diagnose`` holds it
#: shared for an instant to see whether a run trains there (:func:`training_process`).
_LOCK_TRIES = 5
_LOCK_RETRY_SECONDS = 0.02

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def exclusive(logdir: str | Path | None) -> Iterator[None]:
    """Holds the run directory's lock for the block (nothing without a ``logdir``).

    Raises:
        RunDirError: ``run-dir-in-use`` when another process (or another fit of this one) holds it.
    """
    if logdir is None or fcntl is None:
        yield
        return
    path = Path(logdir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        # The first write of a fit: a read-only logdir was a bare PermissionError here.
        raise RunDirError("logdir-unwritable", f"Cannot write to the log directory {path}: {os_error_reason(err, path)}. "
                                               "Pass a writable directory (logdir=... in Python; in a recipe logging.logdir, which trainkit train and compare also take as --logdir).") from None
    try:
        if not _lock(fd):
            holder = os.read(fd, 64).decode("ascii", "replace").strip()
            raise in_use_error(path, int(holder) if holder.isdigit() else 0) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as err:
            # A full disk (or a file-size limit) fails the holder's pid, the first byte a fit
            # writes: a bare OSError traceback from fit, where every later write says this.
            raise RunDirError("logdir-unwritable", f"Cannot write to the log directory {path}: {os_error_reason(err, path / LOCK_NAME)}. "
                                                   "Free space (or raise the file-size limit), or pass another directory (logdir=..., or "
                                                   "--logdir on the command line).") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def in_use_error(path: Path, holder: int) -> RunDirError:
    """The ``run-dir-in-use`` error of ``path``, trained by process ``holder`` (0: unknown)."""
    by = f" (process {holder})" if holder else ""
    return RunDirError("run-dir-in-use", f"{path} is being trained by another trainkit fit{by}: two runs in one directory mix their "
                                         "checkpoints and events. Wait for it to end (or stop it), or train into another directory.")


def _lock(fd: int) -> bool:
    """Takes the exclusive lock of ``fd``; ``False`` when another holder keeps it through every try."""
    for attempt in range(_LOCK_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < _LOCK_TRIES:
                time.sleep(_LOCK_RETRY_SECONDS)
    return False


def training_process(logdir: str | Path) -> int | None:
    """The process training into ``logdir`` now (its lock's holder), or ``None`` when none is:
    the run ended, was killed, or predates the lock (or the platform has no ``flock``).

    The pid comes from the lock file; ``0`` when a holder wrote none (yet).
    """
    if fcntl is None:
        return None
    try:
        fd = os.open(Path(logdir) / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a probe: released by the close below
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip()
            return int(holder) if holder.isdigit() else 0
        return None
    finally:
        os.close(fd)


def holds_run_lock(fit: F) -> F:
    """Runs a Trainer method with its run directory's lock held (the chief's only: under a
    multi-worker strategy only it writes there)."""

    @functools.wraps(fit)
    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with exclusive(self.logdir if self.is_chief else None):
            return fit(self, *args, **kwargs)

    return locked  # type: ignore[return-value]
