"""Imports TensorFlow without its C++ start-up chatter, keeping every real warning.

TensorFlow 2.21 prints several lines from C++ before its logging is configured ("Could not find
cuda drivers", "failed call to cuInit", ...); ``TF_CPP_MIN_LOG_LEVEL`` cannot reach them. The CLI
imports TensorFlow here with file descriptor 2 captured, drops only lines matching the known
start-up messages below, and replays everything else to stderr.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import sys
import tempfile
from collections.abc import Iterator

STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|cudart_stub\.cc.*Could not find cuda drivers"
    r"|failed call to cuInit"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|oneDNN custom operations are on"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions.*rebuild TensorFlow"
    r"|computation placer already registered"
    r"|TF-TRT Warning: Could not find TensorRT"
)


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern[str] = STARTUP_NOISE) -> Iterator[None]:
    """Captures fd 2 (C++ and Python writes alike) and replays the lines ``noise`` does not match."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines() if not noise.search(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


@contextlib.contextmanager
def lasting_imports() -> Iterator[None]:
    """Imports that stay for the whole process, made without the garbage collector's full passes.

    Importing TensorFlow and Keras creates ~360k Python objects, and each full collection the
    allocations trigger on the way walks all of them: five such passes cost ~0.3 s of the CLI's
    start-up on the CI machine. The collector is paused while importing, and what the imports
    built is then frozen (:func:`gc.freeze`): modules, classes and functions live as long as the
    process anyway, and later full collections skip them. For the CLI's own process only; the
    Python API leaves the user's collector alone.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow and initialises its devices with the start-up noise filtered out."""
    # 1 hides TensorFlow's C++ INFO lines only: its warnings (an allocation over 10% of free
    # memory, say) are real ones and stay on for the whole run. A user's own setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    with filtered_stderr(), lasting_imports():
        import tensorflow as tf

        tf.config.list_physical_devices()  # device initialisation prints the cuInit line
