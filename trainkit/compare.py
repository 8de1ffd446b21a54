"""Train several recipes, or every variant of a recipe's ``sweep:``, and compare them side by side.

The scenarios come in families (learning rate 1.0 vs 1e-4, a simple vs a complex model, raw vs
standardised inputs); :func:`compare` trains each member as its own run directory and returns one
:class:`CompareRow` per run, which :func:`format_table` turns into a plain aligned table and
:func:`rows_json` into JSON. A sweep

.. code-block:: yaml

    sweep:
      optimizer.learning_rate: [1.0, 1.0e-3, 1.0e-4]
      preprocessing.standardize_inputs: [false, true]

trains the cartesian product (6 runs here), each named ``<recipe>-<key>=<value>,...``
(``mlp_binary-learning_rate=0.001,standardize_inputs=true``) under ``<logdir>/<that name>/``.

Every variant is validated and prepared (data, model, compatibility and data checks) before the
first one trains, so a bad value in the fourth variant fails at once, with nothing trained and no
run directory written; variants whose data is the same (:func:`trainkit.data.data_key`) share one
copy of it. A run that fails *while* training (a diverging learning rate is often the
point of the comparison) is recorded in its row and the others still run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import math
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainkit.errors import RecipeError, TrainingInterrupted, TrainkitError
from trainkit.recipe import MAX_NAME_BYTES, Recipe, apply_values
from trainkit.runs import json_text, write_atomic

if TYPE_CHECKING:
    from trainkit.data import DataSplits
    from trainkit.history import History
    from trainkit.run import PreparedRun

# Findings of these severities appear in the table; every finding is in the JSON.
TABLE_SEVERITIES = ("warning", "error")
_UNSAFE_NAME = re.compile(r"[^\w.=,+-]+")


@dataclasses.dataclass
class Variant:
    """One run of a comparison: a recipe without a sweep, and the sweep values that made it.

    Attributes:
        recipe: The validated recipe to train (``sweep`` cleared, ``name`` suffixed).
        base: The name of the recipe it came from.
        values: Sweep path -> value of this variant (empty for a recipe without a sweep).
    """

    recipe: Recipe
    base: str
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    overrides: tuple[str, ...] = ()  # the --set options the base recipe was loaded with
    # Swept values that no hyperparameter of Recipe.hparams() shows (momentum, clipnorm, a
    # builder's argument), named as in the run's name: recorded beside the recipe's.
    hparams: dict[str, str | float | int | bool] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        """The run's name: the recipe's name with the sweep values appended."""
        return self.recipe.name or self.base

    @property
    def where(self) -> str:
        """The variant for a message: its recipe file, and its sweep values if it has some."""
        where = str(self.recipe.source_path) if self.recipe.source_path else self.name
        return f"{where} (sweep variant {variant_label(self.values)})" if self.values else where

    def resume_command(self, run_dir: str | Path) -> str:
        """The ``trainkit train`` command that resumes this variant's run in ``run_dir``.

        A sweep variant is trained as its base recipe with the sweep off and its values and name
        set, which gives the very recipe its run directory holds.
        """
        from trainkit.run import yaml_value

        options = list(self.overrides)
        if self.values:
            options += ["sweep=null", f"name={self.name}", *(f"{path}={yaml_value(value)}" for path, value in self.values.items())]
        source = str(self.recipe.source_path) if self.recipe.source_path else "RECIPE"
        return shlex.join(["trainkit", "train", source, *(arg for o in options for arg in ("--set", o)), "--resume", str(run_dir)])


@dataclasses.dataclass
class CompareRow:
    """What one run of a comparison produced (or why it stopped).

    Attributes:
        name: The run's name (``<recipe>-<key>=<value>``).
        recipe: The name of the recipe it came from.
        sweep: Sweep path -> value of this run.
        hparams: The recipe's hyperparameters (``Recipe.hparams()``).
        run_dir: The run directory, once created.
        epochs_run: Epochs that finished.
        seconds: Training time.
        final: Last epoch's value of each history key (``loss``, ``val_loss``, ``accuracy``...).
        best_epoch: 1-based epoch (as in the console's ``epoch N/M`` lines) with the lowest
            ``best_monitor`` value; ``None`` when no epoch has a finite value.
        best_monitor: ``val_loss`` when the run has validation data, else ``loss``.
        findings: Every finding of the checks and the diagnosis, as dicts.
        error: ``"[code] message"`` when training stopped with an error, else ``None``.
    """

    name: str
    recipe: str
    sweep: dict[str, Any]
    hparams: dict[str, Any]
    run_dir: str | None = None
    epochs_run: int = 0
    seconds: float = 0.0
    final: dict[str, float] = dataclasses.field(default_factory=dict)
    best_epoch: int | None = None
    best_monitor: str = "loss"
    findings: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    error: str | None = None

    def finding_codes(self, severities: Sequence[str] = TABLE_SEVERITIES) -> list[str]:
        """The distinct codes of the findings of the given severities, in order of appearance."""
        return list(dict.fromkeys(f["code"] for f in self.findings if f.get("severity") in severities))


# ------------------------------------------------------------------------------------ variants


def format_value(value: Any) -> str:
    """A short, path-safe spelling of a sweep value (``0.001``, ``1e-05``, ``true``, ``sgd``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # Six significant digits, unless they lose the value: 0.001 and 0.0010000001 got one run
        # name, and compare refused the sweep as a recipe "given 2 times".
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    if isinstance(value, Mapping) and isinstance(value.get("name"), str) and len(value) == 1:
        return value["name"]
    if isinstance(value, Mapping | list | tuple):
        value = json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
    return _UNSAFE_NAME.sub("_", str(value)).strip("_") or "_"


def _short_keys(paths: Sequence[str]) -> dict[str, str]:
    """The last part of each path (``learning_rate``), or the whole path where two would clash."""
    last = [p.rsplit(".", 1)[-1] for p in paths]
    return {p: (short if last.count(short) == 1 else p) for p, short in zip(paths, last, strict=True)}


def variant_label(values: Mapping[str, Any]) -> str:
    """``learning_rate=0.001,standardize_inputs=true`` for a variant's sweep values."""
    short = _short_keys(list(values))
    return ",".join(f"{short[path]}={format_value(value)}" for path, value in values.items())


def run_name(base: str, label: str) -> str:
    """A variant's run name, ``<base>-<label>``, cut to fit a folder name where it is too long.

    A sweep of whole values (``model.layers`` lists) spelt names longer than a file system takes
    (255 bytes), and the run failed creating its folder. The cut name ends with a digest of the
    whole label, so that variants cut alike keep names of their own.
    """
    name = f"{base}-{label}"
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(label.encode("utf-8")).hexdigest()[:10]
    kept = name.encode("utf-8")[: MAX_NAME_BYTES - len(digest) - 1].decode("utf-8", "ignore")
    return f"{kept}-{digest}"


def expand(recipe: Recipe) -> list[Variant]:
    """The runs a recipe stands for: itself, or one per combination of its sweep values.

    Raises:
        RecipeError: A combination that is not a valid recipe (``recipe-invalid-value``, ...),
            with the variant named in the message.
    """
    base = recipe.name or "recipe"
    if not recipe.sweep:
        return [Variant(recipe, base, overrides=recipe.overrides)]
    raw = recipe.model_dump(mode="json", exclude={"sweep"})
    paths = list(recipe.sweep)
    _warn_set_replaced_by_sweep(recipe, paths)
    unshown = _unshown_paths(recipe)
    variants = []
    for combination in itertools.product(*(recipe.sweep[p] for p in paths)):
        values = dict(zip(paths, combination, strict=True))
        label = variant_label(values)
        changed = apply_values(raw, values)
        changed["name"] = run_name(base, label)
        try:
            variant = Recipe.from_dict(changed)
        except RecipeError as err:
            raise RecipeError(err.code, f"{recipe.source_path or base}: sweep variant {label}: {err.message}") from None
        variant._source_path = recipe.source_path  # relative data paths stay relative to the file
        extra = {name: _hparam_value(values[path], recipe.sweep[path]) for path, name in unshown.items()}
        variants.append(Variant(variant, base, values, recipe.overrides, extra))
    return variants


def _unshown_paths(recipe: Recipe) -> dict[str, str]:
    """Sweep path -> hyperparameter name, for the swept paths that ``Recipe.hparams()`` has no key for.

    A sweep of ``optimizer.momentum`` gave runs whose hyperparameters were all the same: no column
    in the table, ``differing_hparams: []`` and nothing in TensorBoard's HParams dashboard. Each
    such path is recorded under its name in the runs' names (``momentum``).
    """
    known = recipe.hparams()
    short = _short_keys(list(recipe.sweep))
    return {path: short[path] for path in recipe.sweep
            if _SWEPT_HPARAM.get(path, path.rsplit(".", 1)[-1]) not in known and short[path] not in known}


def _hparam_value(value: Any, values: Sequence[Any]) -> str | float | int | bool:
    """A swept value as an HParams value: as it is where all of the path's values are numbers,
    booleans or strings alike (TensorBoard gives a column one type), else its spelling in the run's name."""
    kinds = {bool if isinstance(v, bool) else float if isinstance(v, int | float) else type(v) for v in values}
    return value if len(kinds) == 1 and kinds <= {bool, float, str} else format_value(value)


def _warn_set_replaced_by_sweep(recipe: Recipe, paths: Sequence[str]) -> None:
    """Says which ``--set`` options the recipe's sweep replaces in every run.

    ``compare r.yaml --set optimizer.learning_rate=0.5`` on a recipe that sweeps the learning rate
    trained the sweep's values only, without a word. A warning, not an error: with several
    recipes, the option may be meant for the others.
    """
    for override in recipe.overrides:
        key = override.partition("=")[0].strip()
        swept = next((path for path in paths if key == path or key.startswith(f"{path}.")), None)
        if swept is not None:
            print(f"warning: [set-replaced-by-sweep] --set {override} has no effect on {recipe.source_path or recipe.name}: its sweep sets "
                  f"{swept} in every run. Change the sweep's values instead (--set 'sweep.{swept}=[...]'), or train one run with --set sweep=null.",
                  file=sys.stderr)


def expand_all(recipes: Sequence[Recipe]) -> list[Variant]:
    """Every variant of every recipe, in order.

    Raises:
        RecipeError: ``duplicate-run-name`` when two runs would have one name (a file given
            twice, or two files with one ``name:``): their rows could not be told apart.
    """
    variants = [variant for recipe in recipes for variant in expand(recipe)]
    names = [variant.name for variant in variants]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:
        clash = [v for v in variants if v.name == twice]
        files = [str(v.recipe.source_path or v.base) for v in clash]
        if len(set(files)) == 1 and len({json.dumps(v.values, sort_keys=True, default=str) for v in clash}) > 1:
            # One recipe's sweep values that differ but are spelt alike (1 and 1.0, "a/b" and "a_b"):
            # "given 2 times" blamed the command line, which named the file once.
            spelt = " and ".join(json.dumps(v.values, default=str) for v in clash)
            raise RecipeError("duplicate-run-name", f"{files[0]}: the sweep values {spelt} give runs one name, {twice}: their runs could not be told apart. "
                                                    "Give each sweep value once, spelt differently from the others.")
        what = f"{files[0]} is given {len(files)} times" if len(set(files)) == 1 else f"{' and '.join(files)} are both named {twice}"
        raise RecipeError("duplicate-run-name", f"{what}: their runs could not be told apart. Pass each recipe once, and give recipes that share a name: a name of their own (--set name=... applies to all).")
    return variants


# ----------------------------------------------------------------------------------- training


def best_epoch(history: Mapping[str, Sequence[float]]) -> tuple[int | None, str]:
    """The 1-based epoch with the lowest ``val_loss`` (or ``loss`` without validation data).

    Returns:
        ``(epoch or None, monitored key)``; ``None`` when no epoch has a finite value.
    """
    monitor = "val_loss" if history.get("val_loss") else "loss"
    values = [(v, i) for i, v in enumerate(history.get(monitor, [])) if math.isfinite(v)]
    return (min(values)[1] + 1 if values else None), monitor


def iter_compare(
    variants: Sequence[Variant],
    *,
    logdir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Iterator[CompareRow]:
    """Prepares every variant, then trains them one after the other, yielding each row when done.

    A generator, so a caller interrupted half-way still holds the rows that finished.

    Args:
        variants: The runs, from :func:`expand_all`.
        logdir: Root of the run directories; default: each recipe's ``logging.logdir``.
        progress: Called with one line per run and phase, and in a terminal a bar shows each
            run's epochs (``None``: silent, no bar).

    Yields:
        One row per variant, in order.

    Raises:
        TrainkitError: A user error found while preparing (bad data, an incompatible model, an
            unwritable logdir), raised before anything trains.
        TrainingInterrupted: Ctrl-C during a run; the rows yielded so far are complete.
    """
    say = progress or (lambda _line: None)
    retracing = _RetracingFilter()
    logging.getLogger("tensorflow").addFilter(retracing)
    try:
        yield from _train_all(variants, logdir, say, show_bar=progress is not None)
    finally:
        logging.getLogger("tensorflow").removeFilter(retracing)


class _RetracingFilter(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls ... triggered tf.function retracing".

    Each variant builds its own model and compiled functions, which TensorFlow's process-wide
    heuristic mistakes for a retracing problem after a few runs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


def _train_all(variants: Sequence[Variant], logdir: str | Path | None, say: Callable[[str], None], show_bar: bool) -> Iterator[CompareRow]:
    # Imported here: preparing builds Keras models, and `trainkit compare --help` should not wait.
    import keras

    # A builder may set the global dtype policy (a recipe has no other way to train in mixed
    # precision): it held for every variant built after it, and a plain recipe compared beside a
    # mixed_float16 one trained in float16, with a LossScaleOptimizer. Each variant is built and
    # trained under the policy `trainkit train` would give it alone; the caller's is put back.
    start = keras.mixed_precision.global_policy()
    try:
        yield from _prepare_and_train(variants, logdir, say, show_bar, start)
    finally:
        keras.mixed_precision.set_global_policy(start)


def _prepare_and_train(variants: Sequence[Variant], logdir: str | Path | None, say: Callable[[str], None], show_bar: bool,
                       start: Any) -> Iterator[CompareRow]:
    """:func:`_train_all`'s work: every variant checked first, then each trained, under ``start``'s
    global dtype policy or the one its builder set."""
    import keras

    from trainkit.data import data_key
    from trainkit.run import prepare_run
    from trainkit.runs import check_writable, refuse_a_run_directory

    total = len(variants)
    for root in dict.fromkeys(Path(logdir if logdir is not None else v.recipe.logging.logdir) for v in variants):
        refuse_a_run_directory(root)
        check_writable(root, keep=False)  # a variant that fails its checks leaves no empty logdir
    prepared: list[PreparedRun | None] = []
    # Variants with the same data share one copy of it (a sweep over the learning rate held one
    # copy a variant until its turn came: 6 variants of a 1 GB csv, 6 GB).
    shared: dict[str, DataSplits] = {}
    policies = []  # the global dtype policy each variant's preparation left
    for i, variant in enumerate(variants, 1):
        say(f"[{i}/{total}] checking {variant.name}")
        key = data_key(variant.recipe)
        keras.mixed_precision.set_global_policy(start)
        try:
            ready = prepare_run(variant.recipe, data=shared.get(key), hparams=variant.hparams)
        except TrainkitError as err:
            if total == 1:
                raise
            raise type(err)(err.code, f"{variant.where}: {err.message}") from None  # which variant
        shared.setdefault(key, ready.splits)
        prepared.append(ready)
        policies.append(keras.mixed_precision.global_policy())
    del shared  # each copy goes with the last variant that uses it
    for i, variant in enumerate(variants, 1):
        # Handed over, not kept: each variant's data, model and trainer go once it has trained,
        # before the next one trains (the row keeps none of them).
        ready, prepared[i - 1] = prepared[i - 1], None
        assert ready is not None
        keras.mixed_precision.set_global_policy(policies[i - 1])
        row = _train_variant(variant, ready, f"[{i}/{total}]", logdir, say, show_bar)
        del ready
        yield row


def _train_variant(variant: Variant, ready: PreparedRun, counter: str, logdir: str | Path | None, say: Callable[[str], None], show_bar: bool) -> CompareRow:
    """Trains one prepared variant and returns its row (a run stopped by an error is a row too)."""
    from trainkit.run import train_recipe
    from trainkit.writers.console import RunProgress

    row = CompareRow(variant.name, variant.base, dict(variant.values), dict(ready.trainer.hparams or variant.recipe.hparams()))
    epochs = variant.recipe.training.epochs
    say(f"{counter} training {variant.name} ({epochs} epoch{'' if epochs == 1 else 's'})")
    started = time.perf_counter()
    try:
        bar = [RunProgress(f"{counter} {variant.name}")] if show_bar else []
        result = train_recipe(variant.recipe, logdir=logdir, verbose=0, prepared=ready, callbacks=bar)
    except TrainingInterrupted:
        raise
    except TrainkitError as err:  # e.g. a model whose code fails in its third epoch: a result too
        row.error = str(err)
        row.findings = [f.to_dict() for f in ready.findings]
        row.seconds = time.perf_counter() - started
        # The epochs it trained and the run directory of its "failed" report.json: the row said
        # 0 epochs and no run directory, where the report held the run's values.
        run_dir = ready.trainer.logdir
        _record_history(row, ready.trainer.history, str(run_dir) if run_dir is not None and Path(run_dir).is_dir() else None)
        say(f"{counter} {variant.name} stopped: error: {err}")
        return row
    _record_history(row, result.history, str(result.run_dir))
    row.seconds = result.seconds
    row.findings = [f.to_dict() for f in result.findings]
    if result.status == "nan-loss":  # train_recipe returns this stop instead of raising it
        stop = next((f for f in result.findings if f.code == "nan-loss"), None)
        row.error = f"[nan-loss] {stop.message if stop else 'the loss became NaN/inf'}"
        say(f"{counter} {variant.name} stopped: error: {row.error}")
        return row
    losses = "  ".join(f"{k} {_num(row.final[k])}" for k in ("loss", "val_loss") if k in row.final)
    # Where it went: the table names the runs, but a name cut to a folder's 255 bytes is not its
    # directory, and the findings column holds only codes (their fixes are in the run's report).
    say(f"{counter} {variant.name}: {row.epochs_run} epoch{'' if row.epochs_run == 1 else 's'} in {row.seconds:.1f}s  {losses}  ({row.run_dir})")
    return row


def _record_history(row: CompareRow, history: History, run_dir: str | None) -> None:
    """Fills ``row`` with what a run trained: its epochs, last values, best epoch and directory."""
    row.run_dir = run_dir
    row.epochs_run = len(history.epoch)
    row.final = {k: v[-1] for k, v in history.history.items() if v}
    row.best_epoch, row.best_monitor = best_epoch(history.history)


def where_runs_went(rows: Sequence[CompareRow]) -> str | None:
    """The line that says where the compared runs were written and how to look at them, or
    ``None`` when none wrote a run directory.

    ``trainkit train`` ends with its run directory and the ``trainkit tensorboard`` command;
    compare's table named neither, nor where the fixes behind its findings' codes are.
    """
    roots = list(dict.fromkeys(Path(row.run_dir).parent.parent for row in rows if row.run_dir is not None))
    if not roots:
        return None
    # trainkit tensorboard serves one log directory: recipes with logdirs of their own have several.
    board = f"trainkit tensorboard {shlex.quote(str(roots[0]))}" if len(roots) == 1 else "trainkit tensorboard LOGDIR"
    return (f"runs written under {', '.join(str(root) for root in roots)} ({board}); "
            "trainkit diagnose RUN_DIR prints a run's findings with their fixes")


def compare(variants: Sequence[Variant], *, logdir: str | Path | None = None, progress: Callable[[str], None] | None = None) -> list[CompareRow]:
    """Trains every variant (see :func:`iter_compare`) and returns all the rows."""
    return list(iter_compare(variants, logdir=logdir, progress=progress))


# ------------------------------------------------------------------------------------- output


def _num(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _num(value)
    return str(value)


#: Sweep paths whose hyperparameter is not named by the path's last part (``seed`` is training.seed).
_SWEPT_HPARAM = {"data.seed": "data_seed", "data.rows": "rows", "data.generator": "data", "data.source": "data",
                 "optimizer.name": "optimizer", "loss.name": "loss",
                 **{f"training.early_stopping{key}": "early_stopping" for key in ("", ".monitor", ".patience", ".min_delta", ".restore_best_weights")}}


def differing_hparams(rows: Sequence[CompareRow]) -> list[str]:
    """The hyperparameters whose values differ between the rows (what the comparison is about).

    A single row (the only run to finish before Ctrl-C) keeps the columns of what its sweep set,
    by the last part of each sweep path (``optimizer.learning_rate`` -> ``learning_rate``).
    """
    if len(rows) < 2:
        # The whole path too: a swept value no hyperparameter shows is named so where two paths clash.
        swept = {name for row in rows for path in row.sweep for name in (_SWEPT_HPARAM.get(path, path.rsplit(".", 1)[-1]), path)}
        return [k for row in rows for k in row.hparams if k in swept]
    keys = list(dict.fromkeys(k for row in rows for k in row.hparams))
    return [k for k in keys if len({json.dumps(row.hparams.get(k), sort_keys=True, default=str) for row in rows}) > 1]


def _metric_columns(rows: Sequence[CompareRow]) -> list[str]:
    """History keys in a stable order: loss, val_loss, then each metric beside its val_ twin."""
    keys = list(dict.fromkeys(k for row in rows for k in row.final))
    base = list(dict.fromkeys(k.removeprefix("val_") for k in keys))
    base.sort(key=lambda k: k != "loss")  # loss first, the others as they came
    return [k for name in base for k in (name, f"val_{name}") if k in keys]


def table_rows(rows: Sequence[CompareRow]) -> tuple[list[str], list[list[str]]]:
    """The header and the cells of the comparison table (all strings)."""
    hparams = differing_hparams(rows)
    metrics = _metric_columns(rows)
    # The planned epochs may be a differing hyperparameter: the column of those run is named apart.
    # So is the loss function, which the epoch loss's column would share a title with.
    titles = {"loss": "loss function"}
    header = ["run", *(titles.get(k, k) for k in hparams), "epochs run" if "epochs" in hparams else "epochs", *metrics, "best epoch", "findings"]
    cells = []
    for row in rows:
        best = f"{row.best_epoch} ({row.best_monitor})" if row.best_epoch is not None else "-"
        codes = row.finding_codes()
        if row.error:
            stop = row.error.split("]")[0].lstrip("[")
            codes = [f"stopped: {stop}", *(c for c in codes if c != stop)]  # not "nan-loss" twice
        cells.append([row.name, *(_hparam_cell(row.hparams.get(k)) for k in hparams), str(row.epochs_run), *(_cell(row.final.get(k)) for k in metrics), best,
                      ", ".join(codes) or "-"])
    return header, cells


def format_table(rows: Sequence[CompareRow]) -> str:
    """A plain aligned text table: names left-aligned, numbers right-aligned, no colour.

    Plain text (not a terminal widget) so that it reads the same in a terminal, a pipe, a CI log
    or a file, at any width.
    """
    header, cells = table_rows(rows)
    widths = [max(len(line[j]) for line in [header, *cells]) for j in range(len(header))]
    # The findings column (the last) is text even when no run found anything (every cell "-").
    numeric = [j for j in range(len(header) - 1) if cells and all(_numeric_cell(line[j]) for line in cells)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if j in numeric else v.ljust(w) for j, (v, w) in enumerate(zip(values, widths, strict=True))]
        return "  ".join(parts).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(c) for c in cells)])


def _hparam_cell(value: Any) -> str:
    """A hyperparameter's cell, spelt as in the run's name: a column of the values that differ
    showed learning rates 0.001 and 0.0010000001 both as ``0.001`` (four significant digits)."""
    return format_value(value) if isinstance(value, float) else _cell(value)


def _numeric_cell(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text == "-"
    return True


def rows_json(rows: Sequence[CompareRow]) -> dict[str, Any]:
    """The comparison as a JSON-serialisable dict: ``{"differing_hparams": [...], "runs": [...]}``."""
    return {"differing_hparams": differing_hparams(rows), "runs": [dataclasses.asdict(row) for row in rows]}


def write_json(rows: Sequence[CompareRow], path: str | Path) -> Path:
    """Writes :func:`rows_json` to ``path`` atomically (NaN and inf written as ``null``, as in report.json)."""
    path = Path(path)
    # Made only now, with something to write (the CLI's check before the runs leaves none behind).
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json_text(rows_json(rows), default=str) + "\n")
    return path
