"""Data for a recipe: built-in generators, csv / npz / scikit-learn sources, splits, standardisation.

Conventions of the arrays returned here:

* ``x`` is float32, shaped ``(n, features)`` (or ``(n, *image_shape)`` for images).
* ``y`` depends on the task: binary and regression labels are float32 ``(n, 1)`` (like
  ``np.random.randint(0, 2, (n, 1))``); multiclass labels are int32 class ids ``(n,)``; with
  ``one_hot`` any class labels are float32 ``(n, classes)``; multilabel labels are float32 multi-hot.
* Standardisation is fitted on the training split only and applied unchanged to the validation
  split, so the validation mean is *not* forced to zero (that would leak validation statistics).

User errors raise :class:`~trainkit.errors.DataError` with one of these codes: ``data-not-found``,
``data-unreadable`` (cannot be decoded / not an npz archive), ``data-empty``,
``data-missing-column``, ``data-missing-key``, ``data-ragged`` (wrong field count, or x and y of
different lengths), ``data-non-numeric``, ``data-out-of-range`` (a number too large for float32) and
``non-finite-data`` (NaN or inf in the file). A missing scikit-learn raises
:class:`~trainkit.errors.RecipeError` ``missing-extra``.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import re
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence, Set
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainkit.errors import DataError, RecipeError, closest
from trainkit.findings import Finding

if TYPE_CHECKING:
    from trainkit.recipe import DataConfig, Recipe

# Standard deviation of U[0, 1): used to centre uniform features before computing learnable labels.
_UNIFORM_STD = math.sqrt(1.0 / 12.0)
# Numbers beyond this magnitude become inf as float32 (numpy warns "overflow encountered in cast").
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclasses.dataclass
class DataSplits:
    """Training and validation arrays, ready for the trainer.

    Attributes:
        x_train: Training features (standardised if the recipe asks for it).
        y_train: Training labels or targets.
        x_val: Validation features, or ``None`` when ``validation_split`` is 0.
        y_val: Validation labels, or ``None``.
        feature_names: Column names (csv, scikit-learn), or ``None`` for generated data; the
            columns ``leak_label`` appends, which the file does not hold, have none.
        findings: What reading the file noticed (an unnamed index column left out, a column that
            counts up like an ID), as warning findings for the run's report.
        input_standardizer: The fitted input :class:`Standardizer`, or ``None``.
        target_standardizer: The fitted target :class:`Standardizer` (regression), or ``None``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    feature_names: list[str] | None = None
    input_standardizer: Standardizer | None = None
    target_standardizer: Standardizer | None = None
    findings: list[Finding] = dataclasses.field(default_factory=list)


# ----------------------------------------------------------------------------- standardisation


#: Values of ``a`` a :meth:`Standardizer.fit` block holds (8 MB in float64).
_STANDARDIZE_BLOCK_VALUES = 1 << 20


class Standardizer:
    """Per-feature ``(a - mean) / std``, fitted once (on the training split) and then frozen.

    Attributes:
        mean: Per-feature mean (float32), ``None`` before :meth:`fit`.
        std: Per-feature standard deviation (float32); constant features get 1, not 0, so they
            map to 0 instead of NaN.
    """

    def __init__(self, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> None:
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)

    def fit(self, a: np.ndarray) -> Standardizer:
        """Computes mean and std over the first axis of ``a`` and returns ``self``."""
        a = np.asarray(a)
        if a.ndim == 0 or a.shape[0] == 0:
            raise DataError("data-empty", "Cannot fit a standardizer on an empty array.")
        # Summed in float64 (sums of large float32 features lose digits), a block of rows at a
        # time: a float64 copy of the whole array and np.std's float64 deviations of it took 4x
        # a float32 array's size beside it (1.5 GB more for 390 MB of training rows).
        mean = np.add.reduce(a, axis=0, dtype=np.float64) / len(a)
        squares = np.zeros(a.shape[1:], dtype=np.float64)
        block = max(1, _STANDARDIZE_BLOCK_VALUES // max(1, math.prod(a.shape[1:])))
        buffer = np.empty((min(block, len(a)), *a.shape[1:]), dtype=np.float64)
        for start in range(0, len(a), block):
            rows = a[start : start + block]
            deviations = np.subtract(rows, mean, out=buffer[: len(rows)])
            deviations *= deviations
            squares += deviations.sum(axis=0)
        std = np.sqrt(squares / len(a))
        std = np.where((std > 0) & np.isfinite(std), std, 1.0)
        self.mean = mean.astype(np.float32)
        self.std = std.astype(np.float32)
        return self

    def transform(self, a: np.ndarray) -> np.ndarray:
        """Standardises ``a`` with the fitted statistics."""
        mean, std = self._fitted()
        out = np.asarray(a, dtype=np.float32) - mean
        out /= std  # in place: one array the size of ``a``, not three in turn
        return out

    def inverse_transform(self, a: np.ndarray) -> np.ndarray:
        """Maps standardised values back to the original scale."""
        mean, std = self._fitted()
        return (np.asarray(a, dtype=np.float32) * std + mean).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (to save next to a checkpoint)."""
        mean, std = self._fitted()
        return {"mean": mean.tolist(), "std": std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Standardizer:
        """Rebuilds a standardizer written by :meth:`to_dict`."""
        return cls(np.asarray(data["mean"]), np.asarray(data["std"]))

    def _fitted(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean is None or self.std is None:
            raise ValueError("Standardizer.fit() must be called before transform().")
        return self.mean, self.std

    def __repr__(self) -> str:
        shape = None if self.mean is None else self.mean.shape
        return f"Standardizer(fitted={self.mean is not None}, shape={shape})"


# --------------------------------------------------------------------------------- entry points


def prepare_data(recipe: Recipe) -> DataSplits:
    """Loads the recipe's data, splits off validation rows and standardises as asked.

    Args:
        recipe: A validated recipe; relative data paths resolve against ``recipe.base_dir``.

    Returns:
        The :class:`DataSplits`; standardizers are fitted on the training split only.
    """
    notes: list[Finding] = []
    x, y, names = _load(recipe.data, recipe.base_dir, recipe.task, notes)
    x_train, y_train, x_val, y_val = split(x, y, recipe.training.validation_split, recipe.training.seed)
    x_std = y_std = None
    if recipe.preprocessing.standardize_inputs:
        x_std = Standardizer().fit(x_train)
        x_train, x_val = x_std.transform(x_train), _maybe(x_std.transform, x_val)
    if recipe.preprocessing.standardize_targets:
        y_std = Standardizer().fit(y_train)
        y_train, y_val = y_std.transform(y_train), _maybe(y_std.transform, y_val)
    return DataSplits(x_train, y_train, x_val, y_val, names, x_std, y_std, notes)


def standardization(splits: DataSplits) -> dict[str, dict[str, Any]] | None:
    """The training split's means and standard deviations the recipe standardised with, for the
    run's report: new inputs are standardised with them (``(x - mean) / std``), and the
    predictions of a model trained on standardised targets turned back into the targets' units
    (``prediction * std + mean``); ``None`` when nothing was standardised."""
    fitted = (("inputs", splits.input_standardizer), ("targets", splits.target_standardizer))
    found = {name: {"mean": s.mean.tolist(), "std": s.std.tolist()} for name, s in fitted if s is not None and s.mean is not None and s.std is not None}
    return found or None


def data_key(recipe: Recipe) -> str:
    """Everything :func:`prepare_data` reads from ``recipe``, as one string.

    Recipes with the same key get the same :class:`DataSplits`, so the variants of a comparison
    that differ only in the model or the training settings can share one copy of the data
    (``trainkit compare`` prepares every variant before the first trains).
    """
    return json.dumps([recipe.data.model_dump(mode="json"), str(recipe.base_dir), recipe.task,
                       recipe.training.validation_split, recipe.training.seed,
                       recipe.preprocessing.model_dump(mode="json")], sort_keys=True, default=str)


def load_arrays(cfg: DataConfig, base_dir: str | Path, *, task: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loads or generates the full data set described by a recipe's ``data`` section.

    Args:
        cfg: The recipe's data section.
        base_dir: Directory that relative ``path`` values resolve against.
        task: The recipe's task; decides the label layout (see the module docstring). ``None``
            takes the generator's natural task (binary for two classes, else multiclass;
            regression for ``learnable_regression``) and binary/regression layout for files.

    Returns:
        ``(x, y)``: float32 features and labels in the layout of the task.
    """
    notes: list[Finding] = []
    x, y, _ = _load(cfg, Path(base_dir), task, notes)
    for note in notes:  # no run to report them in
        print(f"warning: [{note.code}] {note.message} {note.advice}", file=sys.stderr)
    return x, y


def split(
    x: np.ndarray, y: np.ndarray, validation_split: float, seed: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Shuffles rows with ``seed``, then holds out the LAST ``validation_split`` fraction.

    The tail is held out exactly as Keras' ``fit(validation_split=...)`` does (``split_at =
    int(n * (1 - validation_split))``), but after a seeded shuffle, so that sorted files do not
    put one class only in validation. ``seed=None`` skips the shuffle (pure Keras behaviour).

    Returns:
        ``(x_train, y_train, x_val, y_val)``; the validation arrays are ``None`` when
        ``validation_split`` is 0.

    Raises:
        DataError: ``data-empty`` when the split leaves no training rows, or holds out none.
    """
    n = len(x)
    if seed is not None:
        order = np.random.default_rng(seed).permutation(n)
        x, y = x[order], y[order]
    split_at = int(n * (1.0 - validation_split))
    if split_at <= 0:
        raise DataError("data-empty", f"validation_split={validation_split} of {n} rows leaves no training rows; use more rows or a smaller split.")
    if split_at >= n:
        if validation_split > 0:
            # A split too small to hold out a row (1e-17 of 40 rows): training without validation
            # lost every val_* value in silence, and early stopping on val_loss failed after an epoch.
            raise DataError("data-empty", f"validation_split={validation_split} of {n} rows holds out no validation rows; use a larger "
                                          "split, or 0 for none.")
        return x, y, None, None
    return x[:split_at], y[:split_at], x[split_at:], y[split_at:]


def per_batch_max_normalize(x: np.ndarray, batch_size: int) -> np.ndarray:
    """Divides each chunk of ``batch_size`` rows by that chunk's own maximum: a deliberate BUG.

    This reproduces the "normalise by ``X.max()`` of the batch at hand" mistake (the
    ``low_batch_max`` recipe's question): every chunk ends up with max 1 but on a different scale from its neighbours, so
    the same raw value means different things in different batches. Chunks whose max is 0 or not
    finite are left unchanged rather than turned into NaN.
    """
    out = np.array(x, dtype=np.float32, copy=True)
    for start in range(0, len(out), batch_size):
        chunk = out[start : start + batch_size]  # a view: dividing it edits `out`
        peak = float(chunk.max()) if chunk.size else 0.0
        if peak != 0.0 and math.isfinite(peak):
            chunk /= peak
    return out


# -------------------------------------------------------------------------------------- loading


def _load(cfg: DataConfig, base_dir: Path, task: str | None, notes: list[Finding]) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    """Reads the source, lays out labels for the task and applies the scenario distortions."""
    task = task or _natural_task(cfg)
    if cfg.source == "generator":
        x, y = _generate(cfg, task)
        names = None
    else:
        x, y, names = _read_source(cfg, base_dir, notes)
        if task != "regression" and cfg.target_offset:
            y = np.asarray(y) + cfg.target_offset  # 1-based class ids in a file: target_offset -1
        y = _layout_file_labels(y, task, cfg.one_hot)
    if task == "regression":
        y = _scaled(y, cfg.target_scale, cfg.target_offset, "target")
    if cfg.feature_scale != 1.0 or cfg.feature_offset != 0.0:
        x = _scaled(x, cfg.feature_scale, cfg.feature_offset, "feature")
    if cfg.leak_label:
        # The label itself becomes the last feature: the "label leakage" scenario.
        # Its columns (one a class with one_hot) get no name: the checks' advice named one
        # "__label__" in data: {drop: [__label__]}, which no file holds; leak_label: false is the fix.
        x = np.concatenate([x.reshape(len(x), -1), y.reshape(len(y), -1).astype(np.float32)], axis=1)
    if cfg.per_batch_max_normalize:
        x = per_batch_max_normalize(x, cfg.per_batch_max_normalize)
    return x.astype(np.float32, copy=False), y, names


def _scaled(values: np.ndarray, scale: float, offset: float, what: str) -> np.ndarray:
    """``values * scale + offset`` in float32, refusing a result past float32's range.

    Raises:
        DataError: ``data-out-of-range`` (numpy would warn "overflow encountered" and go on
            with inf, which the data checks would then blame on the data).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        out = (values * np.float32(scale) + np.float32(offset)).astype(np.float32)
    if not np.isfinite(out).all():
        raise DataError("data-out-of-range", f"data.{what}_scale {scale:g} and data.{what}_offset {offset:g} take the {what}s past float32's "
                                             f"largest value (~3.4e38). Use a smaller scale (the unscaled scenarios use 100 to 1000).")
    return out


def _natural_task(cfg: DataConfig) -> str:
    if cfg.source == "generator":
        if cfg.generator == "learnable_regression":
            return "regression"
        if cfg.generator == "learnable_multiclass" or cfg.classes > 2:
            return "multiclass"
        return "binary"
    if cfg.source == "sklearn":
        return {"breast_cancer": "binary", "digits": "multiclass"}.get(cfg.name or "", "regression")
    return "binary"


def _read_source(cfg: DataConfig, base_dir: Path, notes: list[Finding]) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
    if cfg.source == "sklearn":
        return _read_sklearn(cfg.name or "")
    given = Path(cfg.path or "").expanduser()
    path = given if given.is_absolute() else base_dir / given
    try:
        if cfg.source == "csv":
            return _read_csv(path, cfg.target or "", cfg.drop, notes)
        x, y = _read_npz(path, cfg.x_key, cfg.y_key)
    except DataError as err:
        if err.code != "data-not-found" or given.is_absolute():
            raise
        # A relative path is the recipe's folder's, not the shell's: say so, and where it is.
        elsewhere = Path.cwd() / given
        # A file only: data.path "." (the recipe's folder, a directory) named the shell's folder,
        # a directory too, as the path to use instead.
        found = f"; {elsewhere} exists: give data.path relative to the recipe's folder, or absolute" if elsewhere.is_file() and elsewhere != path else ""
        raise DataError(err.code, f"{err.message} (data.path is read from the recipe's folder, {base_dir}{found}).") from None
    return x, y, None


def _layout_file_labels(y: np.ndarray, task: str, one_hot: bool) -> np.ndarray:
    """Lays out labels read from a file in the shape the task expects (see the module docstring)."""
    y = np.asarray(y)
    flat = y.reshape(len(y)) if y.ndim > 1 and y.shape[1:] == (1,) else y
    integral = flat.ndim == 1 and np.issubdtype(flat.dtype, np.number) and bool(np.all(np.mod(flat, 1) == 0))
    if task in ("binary", "multiclass") and one_hot and integral and flat.size and flat.min() >= 0:
        if flat.min() >= 1:
            # Ids 1..3 made 4 columns, and then "use Dense(4)": a class 0 that no row has.
            low = int(flat.min())
            raise DataError("label-format", f"The class ids in the file run from {low} to {int(flat.max())}: one-hot rows would start with "
                                            f"{low} column{'s' if low > 1 else ''} that no row has. Number the classes from 0 "
                                            f"(data: {{target_offset: -{low}}} if they are 1-based).")
        return _one_hot(flat.astype(np.int64), int(flat.max()) + 1)
    if task == "multiclass" and integral:
        # int32 unless an id overflows it: the data checks then report the ids as they were.
        fits = not flat.size or (flat.min() >= np.iinfo(np.int32).min and flat.max() <= np.iinfo(np.int32).max)
        return flat.astype(np.int32 if fits else np.int64)
    # Non-integer "class ids" stay as floats so that the data checks can report them.
    return y.astype(np.float32).reshape(len(y), -1)


# ------------------------------------------------------------------------------------ generators


def _generate(cfg: DataConfig, task: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(cfg.seed)
    x = _draw_features(rng, (cfg.rows, *cfg.feature_shape), cfg.feature_distribution)
    if cfg.generator == "learnable_regression":
        return x, _regression_targets(rng, _centred(x, cfg.feature_distribution), cfg.noise)
    if cfg.generator in ("random_labels", "random_images") and task == "multilabel":
        return x, rng.integers(0, 2, (cfg.rows, cfg.classes)).astype(np.float32)
    ids = _class_ids(rng, cfg, x)
    ids = _label_noise(rng, ids, cfg.noise, cfg.classes if cfg.generator != "learnable_binary" else 2)
    return x, _layout_class_ids(ids, task, cfg.classes, cfg.one_hot)


def _draw_features(rng: np.random.Generator, shape: tuple[int, ...], distribution: str) -> np.ndarray:
    if distribution == "normal":
        return rng.standard_normal(shape, dtype=np.float32)
    return rng.random(shape, dtype=np.float32)  # [0, 1) like np.random.rand


def _centred(x: np.ndarray, distribution: str) -> np.ndarray:
    """Features with mean 0 and std 1 under their known distribution (not fitted on the data)."""
    x = x.reshape(len(x), -1).astype(np.float64)
    return x if distribution == "normal" else (x - 0.5) / _UNIFORM_STD


def _class_ids(rng: np.random.Generator, cfg: DataConfig, x: np.ndarray) -> np.ndarray:
    if cfg.generator in ("random_labels", "random_images"):
        return rng.integers(0, cfg.classes, cfg.rows)  # independent of x: nothing to learn
    z = _centred(x, cfg.feature_distribution)
    if cfg.generator == "learnable_binary":
        return _binary_ids(rng, z)
    return _multiclass_ids(rng, z, cfg.classes)


def _binary_ids(rng: np.random.Generator, z: np.ndarray) -> np.ndarray:
    """A random projection plus a quadratic term, thresholded at its median (exactly balanced)."""
    f = z.shape[1]
    w = rng.standard_normal(f) / math.sqrt(f)
    u = rng.standard_normal(f) / math.sqrt(f)
    score = z @ w + 0.5 * ((z @ u) ** 2 - 1.0)
    return (score > np.median(score)).astype(np.int64)


def _multiclass_ids(rng: np.random.Generator, z: np.ndarray, classes: int) -> np.ndarray:
    """Argmax of random projections, with biases nudged so that every class gets rows."""
    f = z.shape[1]
    logits = z @ (rng.standard_normal((f, classes)) / math.sqrt(f))
    bias = np.zeros(classes)
    # A few multiplicative-weights steps: lower the bias of over-represented classes. Without it
    # two nearly parallel projections can leave a class with almost no rows.
    for _ in range(50):
        counts = np.bincount(np.argmax(logits + bias, axis=1), minlength=classes)
        bias -= 0.1 * np.log((counts + 1.0) * classes / (len(z) + classes))
    return np.argmax(logits + bias, axis=1)


def _label_noise(rng: np.random.Generator, ids: np.ndarray, noise: float, classes: int) -> np.ndarray:
    """Replaces a ``noise`` fraction of the labels with uniformly random classes."""
    if noise <= 0:
        return ids
    replace = rng.random(len(ids)) < noise
    ids = ids.copy()
    ids[replace] = rng.integers(0, classes, int(replace.sum()))
    return ids


def _regression_targets(rng: np.random.Generator, z: np.ndarray, noise: float) -> np.ndarray:
    """A smooth nonlinear function of the features plus noise, min-max scaled to [0, 1].

    Scaling to [0, 1] makes ``target_scale``/``target_offset`` exact: 100 and 3 give 3..103.
    """
    f = z.shape[1]
    w1 = rng.standard_normal(f) / math.sqrt(f)
    w2 = rng.standard_normal(f) / math.sqrt(f)
    t = np.sin(1.5 * (z @ w1)) + 0.5 * (z @ w2)
    t = t + noise * rng.standard_normal(len(z))
    span = float(t.max() - t.min())
    t = (t - t.min()) / span if span > 0 else np.zeros_like(t)
    return t.astype(np.float32).reshape(-1, 1)


def _layout_class_ids(ids: np.ndarray, task: str, classes: int, one_hot: bool) -> np.ndarray:
    if one_hot:
        return _one_hot(ids, classes)
    if task == "multiclass":
        return ids.astype(np.int32)
    return ids.astype(np.float32).reshape(-1, 1)


def _one_hot(ids: np.ndarray, classes: int) -> np.ndarray:
    return np.eye(max(classes, int(ids.max()) + 1 if ids.size else classes), dtype=np.float32)[ids]


# ------------------------------------------------------------------------------------------ csv


# Separators other than the comma, tried when the header has no comma at all (a ';'-separated
# export, say). Such a file read with commas has one column, which trainkit can never use, so
# reading it with its own separator changes nothing a comma-separated file gives.
_OTHER_DELIMITERS = (";", "\t", "|")


def _read_csv(path: Path, target: str, drop: Sequence[str], notes: list[Finding]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reads a numeric csv file with a header row; ``target`` names the label column.

    The fields are comma-separated, or separated by ';', tab or '|' when the header holds no comma.
    The features are the other columns but those in ``drop`` and an unnamed first column, which
    is how pandas writes its row index (``df.to_csv(path)``): as a feature, an index of rows
    sorted by label gave 97% validation accuracy on random labels, with no finding. What it
    leaves out or suspects goes to ``notes`` as warning findings.
    """
    head, delimiter = _csv_table(path, limit=2)
    header = _csv_header(head, path, target)
    skipped = _csv_dropped(header, target, drop, path, notes)
    values = _parsed_by_numpy(path, delimiter, head[0][0], len(header), skipped)
    if values is None:  # read field by field: that reader names what numpy refused, and where
        rows, _ = _csv_table(path)
        values = _csv_values(rows, header, path, target, skipped)
    column = header.index(target)
    keep = [j for j, name in enumerate(header) if j != column and j not in skipped]
    notes.extend(_counting_columns(values, header, keep, path))
    return values[:, keep], values[:, column : column + 1], [header[j] for j in keep]


#: Rows a column must count up over before it is taken for an ID (a short file's feature may by chance).
_ID_MIN_ROWS = 20


def _counting_columns(values: np.ndarray, header: list[str], features: list[int], path: Path) -> list[Finding]:
    """Warnings of feature columns that count up row by row: IDs or row numbers.

    Read in file order, before the rows are shuffled: a column of whole numbers that rises on
    every row names the rows, and learns whatever order the file has (sorted by label, it
    leaked the label: no check after the shuffle can tell it from an honest feature).
    """
    found: list[Finding] = []
    if len(values) < _ID_MIN_ROWS:
        return found
    for j in features:
        col = values[:, j]
        if np.all(np.diff(col) > 0) and np.all(col == np.round(col)):
            found.append(Finding(
                "data-id-column", "warning",
                f"Column '{header[j]}' of {path} counts up row by row ({col[0]:g}, {col[1]:g}, {col[2]:g}, ...): an ID or a row "
                "number, which tells nothing about new rows and picks up any order the file's rows have.",
                f"Leave it out with data: {{drop: [{header[j]}]}}, unless it is a time the model should use.",
                {"column": header[j]}))
    return found


def _csv_dropped(header: list[str], target: str, drop: Sequence[str], path: Path, notes: list[Finding]) -> set[int]:
    """The columns left out of the features: ``drop``'s, and an unnamed first column (a pandas index)."""
    skipped = set()
    for name in drop:
        if name not in header:
            raise DataError("data-missing-column", f"data.drop names column '{name}', which is not in {path}.{closest(name, header)} "
                                                   f"Available columns: {', '.join(header)}.")
        skipped.add(header.index(name))
    if header[0] == "" and 0 not in skipped:
        notes.append(Finding(
            "data-index-column", "warning",
            f"The first column of {path} has no name, as pandas writes its row index (df.to_csv(path) without index=False): "
            "it is not used as a feature.",
            "Nothing to do; write the file with df.to_csv(path, index=False) to leave it out of the file."))
        skipped.add(0)
    unnamed = [j for j, name in enumerate(header) if name == "" and j not in skipped]
    if unnamed:
        trailing = " (a comma at the end of every line?)" if unnamed == [len(header) - 1] else ""
        raise DataError("data-missing-column", f"Column {unnamed[0] + 1} of {path} has no name in the header row{trailing}; "
                                               "name every column, or remove the empty one.")
    if len(header) - len(skipped) < 2:
        raise DataError("data-missing-column", f"{path} has no feature columns besides the target '{target}' once the dropped ones are left out.")
    return skipped


def _csv_table(path: Path, limit: int | None = None) -> tuple[list[tuple[int, list[str]]], str]:
    """The first ``limit`` (default all) non-blank rows of a csv file and its separator: commas, or
    else the header's own."""
    rows = list(itertools.islice(_csv_rows(path), limit))
    if rows and len(rows[0][1]) == 1:
        found = [d for d in _OTHER_DELIMITERS if d in rows[0][1][0]]
        if found:
            delimiter = max(found, key=rows[0][1][0].count)
            return list(itertools.islice(_csv_rows(path, delimiter), limit)), delimiter
    return rows, ","


def _parsed_by_numpy(path: Path, delimiter: str, header_line: int, columns: int, skipped: Set[int] = frozenset()) -> np.ndarray | None:
    """The rows below the header, parsed by numpy's C reader, or ``None`` where it cannot.

    Python's csv module and a float() a field took 1.9 s for 200k x 20 (and ~10x the file in
    memory); numpy takes 0.3 s. Anything it refuses or that the checks below refuse (a field that
    is no number, a ragged row, NaN, a value past float32) is left to the field-by-field reader,
    which names the line and the column. The ``skipped`` columns hold 0, as that reader leaves
    them: a dropped column of text (an id, a date) sent every file holding one to that reader
    (300k rows of 22 columns: 7.8 s and 600 MB for a 55 MB file).
    """
    try:
        values = np.loadtxt(path, delimiter=delimiter, skiprows=header_line, comments=None, quotechar='"', encoding="utf-8-sig",
                            dtype=np.float64, ndmin=2, converters=dict.fromkeys(skipped, _skipped_field))
    except (ValueError, OSError):
        return None
    if values.shape[1] != columns or not len(values) or not np.isfinite(values).all() or (np.abs(values) > _FLOAT32_MAX).any():
        return None
    return values.astype(np.float32)


def _skipped_field(text: str) -> float:
    """A field of a column left out of the features (see :func:`_parsed_by_numpy`): not read."""
    return 0.0


def _csv_header(rows: list[tuple[int, list[str]]], path: Path, target: str) -> list[str]:
    """The header's column names, checked to hold ``target``, a feature and data rows below."""
    if not rows:
        raise DataError("data-empty", f"{path} is empty; it needs a header row and data rows.")
    header = [name.strip() for name in rows[0][1]]
    if len(rows) == 1:
        raise DataError("data-empty", f"{path} has a header but no data rows.")
    if all(_is_number_text(name) for name in header) and header != [str(j) for j in range(len(header))]:
        # Read as a header, the first data row named the columns, and `target: '0'` took one of them.
        # (0, 1, 2, ... is a header: pandas names a DataFrame(array)'s columns so.)
        raise DataError("data-no-header", f"The first row of {path} holds only numbers ({', '.join(header[:4])}{', ...' if len(header) > 4 else ''}): "
                                          "the file has no header row. Add one that names every column (the target among them).")
    if target not in header:
        if len(header) == 1 and len(header[0].split()) > 1:
            raise DataError("data-missing-column", f"The header of {path} reads as one column, '{header[0]}': its fields are separated by "
                                                   "spaces, and trainkit reads fields separated by ',', ';', tab or '|'. Write the file with one of those.")
        raise DataError("data-missing-column", f"Column '{target}' is not in {path}.{closest(target, header)} Available columns: {', '.join(header)}.")
    if len(header) == 1:
        raise DataError("data-missing-column", f"{path} has no feature columns besides the target '{target}'.")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        # Which one is the target, and is the other a copy of it (a leak) or another column?
        raise DataError("data-duplicate-column", f"{path} names more than one column {', '.join(map(repr, repeated))}; "
                                                 "give every column its own name in the header row.")
    return header


def _csv_values(rows: list[tuple[int, list[str]]], header: list[str], path: Path, target: str = "", skipped: Set[int] = frozenset()) -> np.ndarray:
    """The data rows as float32, every field a finite number that float32 can hold, read field by
    field (what :func:`_parsed_by_numpy` refused: this names the line and the column).

    The ``skipped`` columns (``data.drop``'s, a pandas index) are not read, and hold 0: a date or a
    name is what ``drop`` is for, and refusing it as no number named the drop that was given.
    """
    for line, fields in rows[1:]:
        if len(fields) != len(header):
            raise DataError("data-ragged", f"Row at line {line} of {path} has {len(fields)} fields; the header has {len(header)}.")
    # float64 first: a number beyond float32's range is refused by name, not cast to inf.
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for i, (line, fields) in enumerate(rows[1:]):
        values[i] = [0.0 if j in skipped else _number(v, line, header[j], path, header[j] == target) for j, v in enumerate(fields)]

    def place(row: int, col: int) -> str:
        return f"line {rows[1 + row][0]}, column '{header[col]}'"

    _refuse_too_large(values, path, place)
    values = values.astype(np.float32)
    _refuse_non_finite(values, path, place)
    return values


def _refuse_too_large(values: np.ndarray, path: Path, place: Callable[[int, int], str]) -> None:
    """Refuses finite numbers too large for float32, naming the first.

    Cast to float32 they would become inf, with a numpy RuntimeWarning on stderr and then a
    NaN/inf error about a value the file does not hold. ``place`` is as for
    :func:`_refuse_non_finite`.
    """
    if values.dtype.kind != "f" or values.dtype.itemsize <= 4 or values.size == 0:
        return  # float32 and integer arrays (int64 reaches ~9.2e18) always fit
    flat = values.reshape(len(values), -1)
    big = np.isfinite(flat) & (np.abs(flat) > _FLOAT32_MAX)
    if not big.any():
        return
    row, col = (int(i) for i in np.argwhere(big)[0])
    count = int(big.sum())
    others = f" ({count - 1} more such value{'s' if count > 2 else ''} in the file)" if count > 1 else ""
    raise DataError(
        "data-out-of-range",
        f"{path}: {flat[row, col]:g} at {place(row, col)} is too large for float32 (the largest is ~3.4e38){others}. "
        f"Rescale that column (other units, or its logarithm) or correct the value.",
    )


def _refuse_non_finite(values: np.ndarray, path: Path, place: Callable[[int, int], str]) -> None:
    """Refuses NaN/inf in a data file (``nan``, ``inf`` parse as numbers), naming the first.

    The data checks would find them too, but in the shuffled training or validation split,
    where a row number does not lead back to the file. ``place(row, column)`` says where an
    entry is in the file's own terms.
    """
    bad = ~np.isfinite(values.reshape(len(values), -1))
    if not bad.any():
        return
    row, col = (int(i) for i in np.argwhere(bad)[0])
    count, rows = int(bad.sum()), int(bad.any(axis=1).sum())
    raise DataError(
        "non-finite-data",
        f"{path} has {count} NaN/inf value{'s' if count > 1 else ''} in {rows} of {len(values)} rows; the first at "
        f"{place(row, col)} ({values.reshape(len(values), -1)[row, col]}). Drop those rows from the file or fill the gaps "
        f"(e.g. with the column's mean).",
    )


def _csv_rows(path: Path, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """Yields ``(line number, fields)`` for each non-blank row."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            for fields in reader:
                if fields and any(f.strip() for f in fields):
                    yield reader.line_num, fields
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise _not_found(path, ".csv") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError("data-unreadable", f"Data file {path} cannot be read as UTF-8 csv: {err}.") from None


def _not_found(path: Path, suffix: str) -> DataError:
    """``data-not-found`` for a path that is no file: a directory is told apart from nothing."""
    if not path.is_dir():
        return DataError("data-not-found", f"Data file {path} does not exist.")
    files = sorted(p.name for p in path.glob(f"*{suffix}") if p.is_file())
    holds = f" It holds {', '.join(files[:3])}{', ...' if len(files) > 3 else ''}." if files else ""
    return DataError("data-not-found", f"Data path {path} is a directory, not a file; set data.path to the {suffix} file itself.{holds}")


#: Fields that mean "no value" in common exports.
_MISSING = frozenset({"", "na", "n/a", "null", "none", "?", "-", "missing"})


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number(text: str, line: int, column: str, path: Path, target: bool = False) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError("data-non-numeric", f"Line {line}, column '{column}' of {path}: {_not_a_number(text, column, target)}") from None


def _not_a_number(text: str, column: str, target: bool) -> str:
    """Why a csv field is no number, and what to do: every field of a data file must be one."""
    shown = repr(text) if text.strip() else "an empty field"
    if re.fullmatch(r"\s*[-+]?[1-9]\d{0,2}(,\d{3})+\s*", text):
        # "17,279": a thousands separator as often as a decimal comma; taking it for one scaled values 1000x.
        # (Not "0,126": no thousands start with 0, and "write it 0126" was no advice.)
        plain = text.strip().replace(",", "")
        return f"{shown} is not a number: write it {plain} if the comma separates thousands, or {text.strip().replace(',', '.')} if it is a decimal comma."
    if re.fullmatch(r"\s*[-+]?\d*,\d+\s*", text):  # ';'-separated exports often write decimal commas: 1,5 for 1.5
        return f"{shown} is not a number (a decimal comma? write it with a point)."
    if text.strip().lower() in _MISSING:
        return f"{shown} is a missing value. Drop the rows that have one, or fill them (e.g. with the column's mean), before training."
    if target:
        return (f"{shown} is not a number. Class labels must be numbers: write the classes as 0..K-1 (pandas: "
                f"df['{column}'] = df['{column}'].astype('category').cat.codes), or 0/1 for a binary task.")
    return (f"{shown} is not a number. Every feature must be a number: encode a categorical column (one-hot, "
            f"pandas.get_dummies), or leave the column out with data: {{drop: [{column}]}}.")


# ------------------------------------------------------------------------------------------ npz


# The first bytes of a zip archive (np.savez writes one; an empty one is only its end record)
# and of a single .npy array (np.save).
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"
_SAVEZ = "np.savez(path, x=..., y=...)"


def _read_npz(path: Path, x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    with _open_npz(path) as archive:
        arrays = [_npz_array(archive, key, path, field) for key, field in ((x_key, "x_key"), (y_key, "y_key"))]
    x, y = arrays
    if len(x) == 0:
        raise DataError("data-empty", f"Array '{x_key}' in {path} has no rows.")
    if len(x) != len(y):
        raise DataError("data-ragged", f"In {path}, '{x_key}' has {len(x)} rows but '{y_key}' has {len(y)}.")
    for key, array in ((x_key, x), (y_key, y)):
        if array.size == 0:  # (n, 0): rows of no values, which the data checks failed on with a numpy traceback
            raise DataError("data-empty", f"Array '{key}' in {path} has {len(array)} rows but no values in them (shape {array.shape}).")
    x = _as_float32(x, f"'{x_key}' in {path}")
    _refuse_non_finite(x, path, lambda row, col: f"row {row} of '{x_key}'")
    _refuse_non_finite(_as_float32(y, f"'{y_key}' in {path}", labels=True), path, lambda row, col: f"row {row} of '{y_key}'")
    return (x.reshape(-1, 1) if x.ndim == 1 else x), y


def _open_npz(path: Path) -> Any:
    """The archive at ``path``, checked to be one first.

    ``np.load`` takes any file that is neither a zip nor an .npy array for a pickle, and with
    pickles refused its error advises loading the file unsafely: a csv or a text file must hear
    what it is instead.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_NPY_MAGIC))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise _not_found(path, ".npz") from None
    except OSError as err:
        raise DataError("data-unreadable", f"Data file {path} cannot be read: {err.strerror or err}.") from None
    if head.startswith(_NPY_MAGIC):
        raise DataError("data-unreadable", f"Data file {path} holds a single array (np.save); save x and y with {_SAVEZ}.")
    if not head.startswith(_ZIP_MAGIC):
        raise DataError("data-unreadable", _not_npz(path, empty=not head))
    try:
        return np.load(path, allow_pickle=False)  # no pickles: a data file must not run code
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # cut short, say
        raise DataError("data-unreadable", f"Data file {path} is a damaged .npz archive ({_clause(err)}); write it again with {_SAVEZ}.") from None


def _not_npz(path: Path, *, empty: bool) -> str:
    what = "is empty" if empty else "is not an .npz archive"
    message = f"Data file {path} {what}; the npz source reads a zip of .npy arrays written by {_SAVEZ}."
    if path.suffix.lower() == ".csv":
        message += " For a csv file set source: csv and target: its label column."
    return message


def _clause(err: BaseException) -> str:
    """An exception's text as a clause inside a sentence: one line, no full stop of its own."""
    return " ".join(str(err).split()).rstrip(".") or type(err).__name__


def _npz_array(archive: Any, key: str, path: Path, field: str = "x_key") -> np.ndarray:
    if key not in archive.files:
        names = ", ".join(archive.files) or "none"
        which = f" Name the array to read with data.{field} (x_key for the inputs, y_key for the labels)." if archive.files else ""
        raise DataError("data-missing-key", f"Key '{key}' is not in {path}. Available keys: {names}.{which}")
    try:
        array = archive[key]
    except ValueError:  # an object array: numpy stores it as a pickle, which is refused
        raise DataError("data-unreadable", f"Array '{key}' in {path} holds Python objects (dtype=object), which only a pickle can load, "
                        f"and trainkit loads no pickles (they can run code). Save it as numbers, e.g. np.asarray({key}, dtype=np.float32).") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:  # a damaged member (bad CRC, cut short)
        raise DataError("data-unreadable", f"Array '{key}' in {path} is damaged ({_clause(err)}); write the file again with {_SAVEZ}.") from None
    if array.ndim == 0:
        raise DataError("data-empty", f"Array '{key}' in {path} is a single value, not one row per example.")
    _refuse_too_large(array, path, lambda row, col: f"row {row} of '{key}'")
    _as_float32(array, f"'{key}' in {path}", labels=field == "y_key")  # fail early on strings, whatever the task
    return array


def _as_float32(array: np.ndarray, what: str, *, labels: bool = False) -> np.ndarray:
    if array.dtype.kind == "c":  # the cast would drop the imaginary parts with a ComplexWarning
        raise DataError("data-non-numeric", f"{what} holds {array.dtype} values, not real numbers.")
    try:
        return np.asarray(array, dtype=np.float32)
    except (TypeError, ValueError):
        # Text said only "holds <U23 values": what to do with it is what the user needs.
        advice = ("" if array.dtype.kind not in "US" else
                  " Save the classes as numbers: 0..K-1 (classes, y = np.unique(y, return_inverse=True)), or 0/1 for a binary task."
                  if labels else
                  " A recipe trains on numbers: save the text encoded (category or token ids as integers, for an Embedding, or "
                  "one-hot columns), or train a model that takes text (a TextVectorization or StringLookup first) from Python "
                  "with trainkit.Trainer, which takes arrays of strings.")
        raise DataError("data-non-numeric", f"{what} holds {array.dtype} values, not numbers.{advice}") from None


# -------------------------------------------------------------------------------------- sklearn


def _read_sklearn(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One of scikit-learn's bundled data sets (read from files shipped with it, no download)."""
    try:
        from sklearn import datasets
    except ImportError:
        raise RecipeError("missing-extra", f'The sklearn data source ("{name}") needs scikit-learn: pip install "trainkit[datasets]".') from None
    loaders = {"breast_cancer": datasets.load_breast_cancer, "digits": datasets.load_digits, "diabetes": datasets.load_diabetes}
    bunch = loaders[name]()
    names = [str(n) for n in getattr(bunch, "feature_names", [])] or None
    return np.asarray(bunch.data, dtype=np.float32), np.asarray(bunch.target), names


def _maybe(fn: Any, a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else fn(a)
