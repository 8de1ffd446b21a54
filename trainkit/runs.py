"""Run directories: unique names, writability checks, atomic writes."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from trainkit.errors import RunDirError, TrainkitError

#: The trained model of a recipe run, in its run directory (see :mod:`trainkit.model_file`).
MODEL_FILE = "model.keras"


def check_writable(logdir: str | Path, *, keep: bool = True) -> Path:
    """Creates ``logdir`` if needed and proves a file can be written there.

    Args:
        logdir: The directory.
        keep: Keep the directories this created. ``False`` for a check made before the run can
            still fail (a bad recipe, incompatible data): such a run leaves no empty ``runs/``.

    Raises:
        RunDirError: ``logdir-unwritable``, before any training starts.
    """
    path = Path(logdir)
    try:
        str(path.absolute()).encode("utf-8")
    except UnicodeEncodeError:
        # A name in a legacy encoding (Latin-1 bytes): Python reads it, but TensorFlow's event and
        # checkpoint writers take only UTF-8 paths, and failed with a traceback inside the run.
        raise RunDirError("logdir-unwritable", f"Cannot write to the log directory {ascii(str(path))[1:-1]}: its path is not UTF-8 text, and "
                                               "TensorFlow writes only to UTF-8 paths. Pass a directory whose path is UTF-8 (rename it, or use another).") from None
    created = new_directories(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".trainkit-write-test-"):
            pass
    except OSError as err:
        reason = os_error_reason(err, path)
        raise RunDirError("logdir-unwritable", f"Cannot write to the log directory {path}: {reason}. Pass a writable directory (logdir=... in Python; in a recipe logging.logdir, which trainkit train and compare also take as --logdir).") from None
    finally:
        if not keep:
            for directory in created:  # deepest first
                with contextlib.suppress(OSError):
                    directory.rmdir()
    return path


def unwritable_part(run_dir: str | Path) -> tuple[Path, str] | None:
    """The first part of an existing run directory a resume could not write, with why; ``None``
    when every part can be written.

    A resume takes a lock file in the directory, writes checkpoints and the report beside the old
    ones (new files: the directories must take them) and cuts the event files and the journal back
    to its checkpoint (the files themselves are rewritten in place).
    """
    run_dir = Path(run_dir)
    # The files rewritten in place; the others (report.json, recipe.yaml, checkpoints) are
    # replaced by new files, which only their directory has to allow.
    in_place = {run_dir: (".trainkit.lock",), run_dir / "checkpoints": ("epochs.jsonl",), run_dir / "train": ("*",), run_dir / "validation": ("*",)}
    for directory, patterns in in_place.items():
        if not directory.is_dir():
            continue
        try:
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".trainkit-write-test-"):
                pass
        except OSError as err:
            return directory, os_error_reason(err, directory)
        for path in sorted(p for pattern in patterns for p in directory.glob(pattern)):
            if path.is_file() and not os.access(path, os.W_OK):
                return path, "Permission denied"
    return None


def refuse_a_run_directory(logdir: str | Path) -> None:
    """Refuses a logdir that is itself a run directory (``runs/mlp/20250101-120000``).

    A new run went inside it, as ``<run>/<recipe>/<time>/``: mixed into another run's files (and
    into what TensorBoard and ``trainkit diagnose`` read for it), when the user most likely meant
    to continue that run. The advice names ``trainkit train``: ``compare`` and ``check`` refuse it
    too, and have no ``--resume`` of their own.

    Raises:
        RunDirError: ``logdir-is-run``.
    """
    path = Path(logdir)
    if (path / "checkpoints").is_dir() or ((path / "recipe.yaml").is_file() and (path / "train").is_dir()):
        raise RunDirError("logdir-is-run", f"The log directory {path} is a run directory (it holds {'checkpoints/' if (path / 'checkpoints').is_dir() else 'recipe.yaml and train/'}): "
                                           f"a new run would go inside it. To continue that run use trainkit train RECIPE --resume {shlex.quote(str(path))}; for a new run pass the logdir "
                                           f"that holds the runs, e.g. {path.parent.parent}.")


def new_directories(path: str | Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first: what creating it adds."""
    path = Path(path)
    return [p for p in (path, *path.parents) if not p.exists()]


def remove_run_dir(run_dir: Path, made: Sequence[Path] = ()) -> None:
    """Removes a run directory that holds nothing worth keeping, and the ``made`` parents left empty."""
    shutil.rmtree(run_dir, ignore_errors=True)
    for directory in made:  # deepest first; one that holds another run stays
        with contextlib.suppress(OSError):
            directory.rmdir()


def os_error_reason(err: OSError, path: str | Path) -> str:
    """Why ``path`` could not be made or written: the OS's words, or the file in its way.

    Creating ``a/b`` where ``a`` is a file fails with "File exists" (or "Not a directory"),
    which names neither the culprit nor the problem.
    """
    if isinstance(err, FileExistsError | NotADirectoryError):
        for ancestor in [Path(path), *Path(path).parents]:
            if ancestor.exists() and not ancestor.is_dir():
                return f"{ancestor} is a file, not a directory"
    return err.strerror or str(err)


def create_run_dir(logdir: str | Path, name: str) -> Path:
    """Creates ``<logdir>/<name>/<timestamp>`` and returns it; never reuses an existing directory.

    Two runs started in the same second get ``<timestamp>``, ``<timestamp>-1``, ...: the directory
    is claimed with an exclusive ``mkdir``, so concurrent processes cannot both get one name.
    """
    parent = check_writable(Path(logdir) / name)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for suffix in range(10_000):
        candidate = parent / (stamp if suffix == 0 else f"{stamp}-{suffix}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as err:
            raise RunDirError("logdir-unwritable", f"Cannot create the run directory {candidate}: {os_error_reason(err, candidate)}.") from None
        return candidate
    raise RunDirError("logdir-unwritable", f"Could not find a free run directory name under {parent}.")


def _read_umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # once, at import: os.umask is process-wide, and writer threads run later


def write_atomic(path: str | Path, text: str) -> None:
    """Writes ``text`` to ``path`` so readers see the old file or the whole new one, never half."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary file beside ``path`` for the block to write (``model.save`` needs a name ending
    in ``.keras``: ``suffix``), renamed over ``path`` once the block ends, removed if it raises:
    readers see the old file or the whole new one, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        # mkstemp makes the file 0600; the renamed file should read like any other the user
        # writes (0644 under the usual umask), for a TensorBoard or colleague on another account.
        os.fchmod(fd, 0o666 & ~_UMASK)
        os.close(fd)
        fd = -1
        yield Path(tmp)
        with open(tmp, "rb") as written:  # on the disk before the rename makes it the file
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def json_text(value: Any, *, indent: int | None = 2, default: Any = None) -> str:
    """``value`` as standard JSON (RFC 8259), for files other tools read: NaN and infinities as ``null``.

    Python writes them as bare ``NaN`` / ``Infinity``, which JavaScript's ``JSON.parse`` refuses
    and jq 1.6 reads as null without a word.
    """
    return json.dumps(_finite_or_none(value), indent=indent, allow_nan=False, default=default)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    return value


#: TensorFlow's errors (``tf.io.gfile`` writes) that mean the storage failed, not the program.
#: A file-size limit (``ulimit -f``, a quota's EFBIG) is an ``OutOfRangeError`` (TensorFlow's
#: code for EFBIG): it failed the run with a RuntimeError traceback.
_STORAGE_ERRORS = frozenset({"ResourceExhaustedError", "PermissionDeniedError", "NotFoundError", "FailedPreconditionError", "DataLossError",
                             "OutOfRangeError"})


#: TensorFlow's wrapping of an op's error: ``{{function_node __wrapped__SaveV2_...}} `` before it,
#: `` [Op:SaveV2]`` after it, and sometimes a ``name: `` line.
_TF_OP_WRAPPING = re.compile(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:[A-Za-z0-9_]+\]( name:\s*\S*)?")


def storage_error_text(err: BaseException) -> str:
    """What a failed write says, in the OS's or TensorFlow's words, on one line, without TensorFlow's
    op wrapping (``{{function_node __wrapped__SaveV2_dtypes_21_device_/job:localhost/...}}``,
    ``[Op:SaveV2]``), which names graph internals, not the problem: ``.../ckpt-9000_temp;
    Permission denied``."""
    text = str(getattr(err, "message", None) or err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    return _TF_OP_WRAPPING.sub("", first).strip() or first


def is_storage_error(err: BaseException) -> bool:
    """Whether writing failed for the disk or the directory (full, read-only, deleted)."""
    return isinstance(err, OSError) or type(err).__name__ in _STORAGE_ERRORS


def is_storage_failure(err: BaseException) -> bool:
    """Whether ``err`` is a write that failed for the disk or the directory: trainkit's
    ``logdir-unwritable``, or the OS's or TensorFlow's own error (not another trainkit error,
    ``run-dir-in-use`` say, which is an ``OSError`` too)."""
    if isinstance(err, TrainkitError):
        return err.code == "logdir-unwritable"
    return is_storage_error(err)
