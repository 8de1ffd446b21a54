"""Diagnosing a finished run from its TensorBoard event files alone (``trainkit diagnose RUN_DIR``).

The live :class:`~trainkit.diagnosis.callback.DiagnosisCallback` writes everything the rules need
into the run's events: the per-step statistics (``step/loss``, ``grad_norm/...``, ...), the epoch
values (``epoch/*`` in ``train/`` and ``validation/``), the step at which each epoch ended and the
regularization penalty (``diagnosis/*``), the context (task, chance level, layer order, schedule)
and the checks' findings (text ``diagnosis_context``), and what happened at the end (early
stopping, NaN recovery; text ``diagnosis_end``). :func:`diagnose_run_dir` reads them back with
tensorboard's ``EventAccumulator`` (every scalar kept), replays the steps epoch by epoch through a
fresh :class:`~trainkit.diagnosis.engine.Diagnoser` and so reaches the findings of the live run.
(With ``logging.scalars_every`` > 1 only every n-th step was written, and the per-step detectors
see only those.)
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trainkit.diagnosis.engine import UNFINISHED, Context, Diagnoser
from trainkit.errors import TrainkitError
from trainkit.findings import Finding
from trainkit.run_lock import LOCK_NAME, training_process
from trainkit.runs import MODEL_FILE

_CONTEXT = "diagnosis_context/text_summary"
_END = "diagnosis_end/text_summary"
_EPOCH_END = "diagnosis/epoch_end_step"
_REGULARIZATION = "diagnosis/regularization"
_TRAIN_REGULARIZATION = "diagnosis/train_regularization"
_JSON_BLOCK = re.compile(r"```json\s*(.*?)\s*```", re.S)


class RunNotFoundError(TrainkitError, FileNotFoundError):
    """The directory holds no trainkit run (no ``train/`` TensorBoard events)."""


@dataclasses.dataclass
class RunEvents:
    """What a run directory's event files hold, as the diagnosis needs it.

    Attributes:
        run_dir: The run directory.
        context: The diagnosis context written at the start (a bare one for older runs).
        checks: The findings of the compatibility and data checks, from the same text.
        notes: What happened at the end (early stopping, NaN recovery), when written.
        steps: ``[S]`` global steps that have per-step scalars, ascending.
        names: Names of the per-step scalars (``loss``, ``grad_norm/dense/kernel``, ...).
        values: ``[S, len(names)]`` their values (NaN where a step lacks one).
        present: ``[S, len(names)]`` whether the step wrote that scalar (a value NaN where one was
            written is a NaN the run computed; one a step lacks is a statistic it did not have).
        epoch_logs: Epoch -> its values (``loss``, metrics, ``val_*``).
        epoch_end_steps: Epoch -> global step count when it ended.
        regularization: Epoch -> regularization penalty at its end.
        fit_contexts: ``(first step, context)`` of each fit that wrote one, in step order (a
            resumed fit's layers, callbacks and epochs are its own); ``context`` is the last.
        diagnosis_start: The first step of the last fit that did not resume the run (a
            trainer's own second fit, whose findings replace the earlier fit's): the findings are
            those of the steps and epochs from there on; ``None`` for runs that do not say (read
            whole).
        train_regularization: Epoch -> the penalty in its training loss, where the run measured
            it (activity penalties).
    """

    run_dir: Path
    context: Context
    checks: list[Finding]
    notes: dict[str, Any]
    steps: np.ndarray
    names: list[str]
    values: np.ndarray
    present: np.ndarray
    epoch_logs: dict[int, dict[str, float]]
    epoch_end_steps: dict[int, int]
    regularization: dict[int, float]
    fit_contexts: list[tuple[int, Context]] = dataclasses.field(default_factory=list)
    diagnosis_start: int | None = None
    train_regularization: dict[int, float] = dataclasses.field(default_factory=dict)


def run_order(run: Path) -> tuple[str, int, str]:
    """Sorts run directories oldest first: ``<timestamp>``, ``<timestamp>-1``, ..., ``-10`` (by
    name, the tenth run of a second sorted before the second and was not the newest)."""
    match = re.fullmatch(r"(.*?)-(\d+)", run.name)
    if match and re.fullmatch(r"\d{8}-\d{6}", match.group(1)):
        return match.group(1), int(match.group(2)), ""
    return run.name, 0, run.name


def find_run_dir(path: str | Path) -> Path:
    """The run directory at ``path``: itself, or its newest run (``<recipe>/<timestamp>/``).

    Raises:
        RunNotFoundError: ``run-not-found`` when neither holds ``train/`` event files.
    """
    path = Path(path)
    if _has_events(path):
        return path
    if path.is_dir():
        runs = sorted((p for p in path.iterdir() if p.is_dir() and _has_events(p)), key=run_order)
        if runs:
            return runs[-1]
    # A path inside a run (its report.json, model.keras, train/ or checkpoints/ folder): name the run itself.
    run = next((parent for parent in list(path.parents)[:2] if _has_events(parent)), None) if path.exists() else None
    if run is not None:
        raise RunNotFoundError("run-not-found", f"{path} is inside the run directory {run}: pass that directory (trainkit diagnose {shlex.quote(str(run))}).")
    if not path.exists():
        what = "does not exist"
    elif not path.is_dir():
        what = "is a file, not a run directory"
    else:
        # A logdir (<logdir>/<recipe>/<time>): name its recipes' folders, one of which was meant.
        recipes = sorted(p.name for p in _subdirectories(path) if any(_has_events(run) for run in _subdirectories(p)))
        if recipes:
            shown = ", ".join(shlex.quote(str(path / name)) for name in recipes[:5]) + (", ..." if len(recipes) > 5 else "")
            raise RunNotFoundError("run-not-found", f"{path} is a log directory, with the runs of {len(recipes)} recipe{'s' * (len(recipes) > 1)}: "
                                                    f"pass one recipe's folder for its newest run ({shown}), or one run directory in it.")
        what = "holds no TensorBoard events of a trainkit run (train/events.out.tfevents.*)"
    raise RunNotFoundError("run-not-found", f"{path} {what}. Pass a run directory written by trainkit train, e.g. runs/mlp_binary/20250101-120000 (or runs/mlp_binary for its newest run).")


def _subdirectories(path: Path) -> list[Path]:
    """The directories in ``path``; none where it cannot be listed (no permission, say)."""
    try:
        return [p for p in path.iterdir() if p.is_dir()]
    except OSError:
        return []


def _has_events(path: Path) -> bool:
    return path.is_dir() and any((path / "train").glob("events.out.tfevents.*"))


def read_run(path: str | Path) -> RunEvents:
    """Reads a run directory's event files (every scalar and text, nothing sampled away)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = find_run_dir(path)
    guidance = {"scalars": 0, "tensors": 0, "histograms": 1, "images": 1, "audio": 1, "compressedHistograms": 1}
    train = EventAccumulator(str(run_dir / "train"), size_guidance=guidance)
    train.Reload()
    validation = None
    if any((run_dir / "validation").glob("events.out.tfevents.*")):
        validation = EventAccumulator(str(run_dir / "validation"), size_guidance=guidance)
        validation.Reload()

    contexts = _json_texts(train, _CONTEXT)
    payload = contexts[-1][1] if contexts else {}
    if not payload and not train.Tags().get("scalars"):
        # Files that hold no event TensorBoard could read: "no findings" would pass for a verdict.
        raise RunNotFoundError("run-not-found", f"{run_dir}'s event files hold no trainkit events that can be read: they are damaged, empty, "
                                                "or written by another program. Diagnose the run directory trainkit train wrote.")
    recipe_run = (run_dir / "recipe.yaml").exists()
    context = _saved_context(payload.get("context", {}), recipe_run)
    checks = [Finding.from_dict(f) for f in payload.get("checks", [])]
    notes = _json_text(train, _END)
    if notes is None and payload:
        # The live diagnosis wrote its context at the start but never its end: the run did not
        # end (killed, still training, or its event files could not be written), and its
        # end-of-run verdicts wait for the end, as the live run's do (an underfitting at the last
        # epoch written was reported beside "the end-of-run verdicts are missing").
        notes = {"stop_reason": "interrupted"}
    notes = notes or {}

    scalar_tags = train.Tags().get("scalars", [])
    step_tags = [t for t in scalar_tags if not t.startswith(("epoch/", "diagnosis/"))]
    series = {_step_name(t): train.Scalars(t) for t in step_tags}
    steps = np.array(sorted({e.step for events in series.values() for e in events}), dtype=np.int64)
    names = list(series)
    values = np.full((len(steps), len(names)), np.nan)
    present = np.zeros((len(steps), len(names)), dtype=bool)
    position = {int(s): i for i, s in enumerate(steps)}
    for j, name in enumerate(names):
        for event in series[name]:
            values[position[event.step], j] = event.value
            present[position[event.step], j] = True

    epoch_logs: dict[int, dict[str, float]] = {}
    for tag in scalar_tags:
        if tag.startswith("epoch/") and tag != "epoch/learning_rate":
            for event in train.Scalars(tag):
                epoch_logs.setdefault(event.step, {})[tag.removeprefix("epoch/")] = event.value
    if validation is not None:
        for tag in validation.Tags().get("scalars", []):
            if tag.startswith("epoch/"):
                for event in validation.Scalars(tag):
                    epoch_logs.setdefault(event.step, {})["val_" + tag.removeprefix("epoch/")] = event.value
    ends = {e.step: round(e.value) for e in train.Scalars(_EPOCH_END)} if _EPOCH_END in scalar_tags else {}
    penalty = {e.step: float(e.value) for e in train.Scalars(_REGULARIZATION)} if _REGULARIZATION in scalar_tags else {}
    train_penalty = {e.step: float(e.value) for e in train.Scalars(_TRAIN_REGULARIZATION)} if _TRAIN_REGULARIZATION in scalar_tags else {}
    fit_contexts = [(step, _saved_context(data.get("context", {}), recipe_run)) for step, data in contexts]
    # Older runs do not say whether a fit resumed the run's diagnosis, and are diagnosed whole.
    fresh = [step for step, data in contexts if data.get("resumed") is False]
    return RunEvents(run_dir, context, checks, notes, steps, names, values, present, epoch_logs, ends, penalty, fit_contexts,
                     fresh[-1] if fresh else None, train_penalty)


def _saved_context(data: dict[str, Any], recipe_run: bool) -> Context:
    """The context a fit wrote; a run written before it said whether it trained a recipe is one
    where its directory holds the recipe (``trainkit train`` writes ``recipe.yaml``)."""
    return Context.from_dict(data if "recipe" in data else {**data, "recipe": recipe_run})


def _step_name(tag: str) -> str:
    """``step/loss`` -> ``loss`` (names without a group get ``step/`` as their tag)."""
    return tag.removeprefix("step/")


def _json_text(accumulator: Any, tag: str) -> dict[str, Any] | None:
    """The JSON block of the last text summary written under ``tag``, if any."""
    texts = _json_texts(accumulator, tag)
    return texts[-1][1] if texts else None


def _json_texts(accumulator: Any, tag: str) -> list[tuple[int, dict[str, Any]]]:
    """``(step, JSON block)`` of each text summary written under ``tag`` that holds one."""
    if tag not in accumulator.Tags().get("tensors", []):
        return []
    texts = []
    for event in accumulator.Tensors(tag):
        raw = event.tensor_proto.string_val
        text = raw[0].decode("utf-8", "replace") if raw else ""
        match = _JSON_BLOCK.search(text)
        try:
            data = json.loads(match.group(1) if match else text)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            texts.append((int(event.step), data))
    return texts


def replay(events: RunEvents, thresholds: Any = None) -> Diagnoser:
    """Feeds a run's events through a fresh :class:`Diagnoser`, epoch by epoch, and finishes it.

    Each fit's steps and epochs are judged in that fit's context, as the live run judged them: a
    resumed fit's model rebuilt in the same process has other layer names, and judged in its
    context the first fit's output layer (``dense_1``, now no layer of the model) was a hidden
    layer with ``saturated-activations``.
    """
    events = _from_diagnosis_start(events)
    diagnoser = Diagnoser(_context_at(events, int(events.steps[0]) if len(events.steps) else 0), thresholds=thresholds)
    epochs = sorted(set(events.epoch_logs) | set(events.epoch_end_steps))
    bounds = _epoch_bounds(events, epochs)
    for epoch, (start, end) in zip(epochs, bounds, strict=True):
        diagnoser.begin_epoch(epoch, start)
        _add_rows(diagnoser, events, np.flatnonzero((events.steps >= start) & (events.steps < end)))
        diagnoser.context = _context_at(events, end - 1)
        diagnoser.end_epoch(epoch, events.epoch_logs.get(epoch, {}), regularization=events.regularization.get(epoch),
                            train_regularization=events.train_regularization.get(epoch))
    # Steps after the last closed epoch: an epoch abandoned at a non-finite loss (the live run never
    # closed it either).
    start = bounds[-1][1] if bounds else (int(events.steps[0]) if len(events.steps) else 0)
    rows = np.flatnonzero(events.steps >= start)
    if len(rows):
        diagnoser.begin_epoch(epochs[-1] + 1 if epochs else events.context.initial_epoch, start)
        _add_rows(diagnoser, events, rows)
    diagnoser.context = events.context
    diagnoser.finish(events.notes)
    return diagnoser


def _from_diagnosis_start(events: RunEvents) -> RunEvents:
    """The events from :attr:`RunEvents.diagnosis_start` on: the steps trained since, the fits
    begun since, and the epochs that ended after it (the fresh fit numbered its epochs from its
    ``initial_epoch`` again and overwrote the earlier fit's that it reached; those it did not
    reach ended before it began)."""
    begin = events.diagnosis_start
    if begin is None or not len(events.steps) or begin <= events.steps[0]:
        return events
    keep = events.steps >= begin
    earlier = {epoch for epoch, end in events.epoch_end_steps.items() if end <= begin}
    return dataclasses.replace(
        events, steps=events.steps[keep], values=events.values[keep], present=events.present[keep],
        epoch_logs={e: logs for e, logs in events.epoch_logs.items() if e not in earlier},
        epoch_end_steps={e: end for e, end in events.epoch_end_steps.items() if e not in earlier},
        regularization={e: penalty for e, penalty in events.regularization.items() if e not in earlier},
        train_regularization={e: penalty for e, penalty in events.train_regularization.items() if e not in earlier},
        fit_contexts=[(step, context) for step, context in events.fit_contexts if step >= begin])


def _epoch_bounds(events: RunEvents, epochs: list[int]) -> list[tuple[int, int]]:
    """``[start, end)`` global steps of each epoch: the written epoch ends, else an even split."""
    first = int(events.steps[0]) if len(events.steps) else 0
    last = int(events.steps[-1]) + 1 if len(events.steps) else 0
    bounds = []
    start = first
    per_epoch = None
    ctx = events.context
    if ctx.train_rows and ctx.batch_size:
        per_epoch = math.ceil(ctx.train_rows / ctx.batch_size)
    elif epochs:
        per_epoch = max(1, math.ceil((last - first) / len(epochs)))
    for i, epoch in enumerate(epochs):
        if epoch in events.epoch_end_steps:
            end = events.epoch_end_steps[epoch]
        else:
            end = last if i == len(epochs) - 1 else start + (per_epoch or 0)
        bounds.append((start, end))
        start = end
    return bounds


def _add_rows(diagnoser: Diagnoser, events: RunEvents, rows: np.ndarray) -> None:
    """Adds the steps at ``rows`` to ``diagnoser``, one call per block of consecutive steps that
    wrote the same statistics, each with those statistics only.

    Blocks of consecutive steps: more than one with ``scalars_every`` > 1. Of the same statistics:
    a run resumed in the process that built its first model named the rebuilt model's layers
    ``dense_2`` where the first fit's were ``dense``; the columns one fit never wrote are no NaN it
    computed (read as such, they made a ``nan-loss`` the live run did not have).
    """
    if len(rows) == 0:
        return
    steps, present = events.steps[rows], events.present[rows]
    fit_starts = np.isin(steps[1:], [step for step, _ in events.fit_contexts])
    breaks = np.flatnonzero((np.diff(steps) != 1) | (present[1:] != present[:-1]).any(axis=1) | fit_starts) + 1
    for block in np.split(np.arange(len(rows)), breaks):
        columns = np.flatnonzero(present[block[0]])
        diagnoser.context = _context_at(events, int(steps[block[0]]))
        diagnoser.add_steps(int(steps[block[0]]), [events.names[j] for j in columns], events.values[np.ix_(rows[block], columns)])


def _context_at(events: RunEvents, step: int) -> Context:
    """The context of the fit that trained ``step`` (the first fit's before any began)."""
    context = events.fit_contexts[0][1] if events.fit_contexts else events.context
    for start, fit_context in events.fit_contexts:
        if start <= step:
            context = fit_context
    return context


def diagnose_run_dir(path: str | Path, thresholds: Any = None) -> list[Finding]:
    """The findings of a finished run, rebuilt from its TensorBoard events alone.

    Args:
        path: A run directory (or a recipe directory, for its newest run).
        thresholds: Rule thresholds (:class:`~trainkit.diagnosis.rule_types.Thresholds`).

    Returns:
        The checks' findings recorded at the start, then the diagnosis findings, as the live run
        reported them.

    Raises:
        RunNotFoundError: ``run-not-found`` when there is no run at ``path``.
    """
    return diagnose_events(read_run(path), thresholds)


def diagnose_events(events: RunEvents, thresholds: Any = None) -> list[Finding]:
    """:func:`diagnose_run_dir` on the events :func:`read_run` read."""
    from trainkit.diagnosis.callback import annotate_nan_recovery

    diagnoser = replay(events, thresholds)
    findings = list(diagnoser.findings)
    note = events.notes.get("nan_recovery")
    if note:
        findings = [annotate_nan_recovery(f, note) if f.code == "nan-loss" else f for f in findings]
    return [*events.checks, *findings]


def missing_epochs_note(events: RunEvents) -> str | None:
    """A line saying that the event files hold fewer epochs than the run's ``report.json`` lists,
    or ``None`` when they hold them all (or there is no report to compare with).

    An event file deleted or cut short after the run (or before a resume) left the diagnosis to
    judge what remained: "no findings" beside a report that had some, without a word.
    """
    try:
        report = json.loads((events.run_dir / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    epochs = report.get("epochs_run") if isinstance(report, dict) else None
    if not isinstance(epochs, int) or isinstance(epochs, bool):
        return None
    history = report.get("history") if isinstance(report.get("history"), dict) else {}
    splits = [("train", lambda key: not key.startswith("val_"))]
    if any(str(key).startswith("val_") for key in history):
        splits.append(("validation", lambda key: key.startswith("val_")))
    short = []
    for split, ours in splits:
        held = sum(1 for logs in events.epoch_logs.values() if any(ours(key) for key in logs))
        if held < epochs:
            short.append(f"{held} in {split}/")
    if not short:
        return None
    return (f"incomplete: report.json lists {epochs} epochs, but the event files hold {' and '.join(short)} (deleted or cut short since): "
            "the findings below are those of the epochs they hold; report.json has the run's own.")


def model_file_line(run_dir: str | Path) -> str | None:
    """Where a recipe run's trained model is (``model: <run_dir>/model.keras``), or, for a run
    that ended with a usable model (``completed`` or ``stopped``) and has none, why and how to get
    it; ``None`` for the others (a run of the Python API, one a NaN, an error or an interruption
    ended: :func:`unfinished_note` speaks of those)."""
    run_dir = Path(run_dir)
    path = run_dir / MODEL_FILE
    if path.is_file():
        return f"model: {path} (keras.models.load_model; compiled with the run's loss, metrics and optimizer)"
    try:
        report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or report.get("status") not in ("completed", "stopped") or not (run_dir / "recipe.yaml").exists():
        return None
    # A resume saves the model again as the run did: one Keras could not save needs its layer
    # classes registered first (the warning named them), else the resume says the same warning.
    return (f"model: no {MODEL_FILE} (Keras could not save the model, which the run said in a warning: [model-unsaved] line, or the run is "
            f"older than the file): resume it (trainkit train RECIPE --resume {shlex.quote(str(run_dir))}; nothing is trained again) to write it, "
            "after registering the layer classes that warning named (@keras.saving.register_keras_serializable()), "
            "or read its checkpoints/ with tf.train.Checkpoint (README: Python).")


def unfinished_note(run_dir: str | Path) -> str | None:
    """A line saying that a ``trainkit train`` run did not finish, or ``None`` when it did.

    Its findings are then those of its events so far: the end-of-run verdicts (``loss-at-chance``,
    ``plateau``, ``lr-too-low``, ``underfitting``) come when it ends. Runs of the Python API
    write no ``report.json`` (nor ``recipe.yaml``) and get no note.
    """
    run_dir = Path(run_dir)
    recipe = run_dir / "recipe.yaml"
    if not recipe.exists():
        return None
    try:
        planned = (yaml.safe_load(recipe.read_text(encoding="utf-8")) or {}).get("training", {}).get("epochs")
    except (OSError, ValueError, yaml.YAMLError, AttributeError):  # ValueError: not UTF-8
        planned = None
    # Quoted: the command is meant to be pasted back, spaces in the path and all.
    resume = f"; resume it with trainkit train RECIPE --resume {shlex.quote(str(run_dir))} (the recipe and --set options it began with)" if any((run_dir / "checkpoints").glob("*.json")) else ""
    try:
        report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        # The run's lock tells a run still training from one whose process died without a word.
        pid = training_process(run_dir)
        if pid is not None:
            by = f" (process {pid})" if pid else ""
            return f"unfinished: the run is still training{by}: these are the findings of its events so far. The end-of-run verdicts come when it ends."
        if (run_dir / LOCK_NAME).exists():
            # A run that failed writing its end (a full disk) leaves the same as a killed one.
            return (f"unfinished: the run's process ended without its report.json (killed, or failed before writing it: a full disk, say), "
                    f"and nothing trains into it{resume}. The end-of-run verdicts are missing.")
        return f"unfinished: the run has no report.json (still training, or its process was killed){resume}. The end-of-run verdicts are missing."
    except (OSError, ValueError):
        report = None
    if not isinstance(report, dict):  # cut short by a crash, or edited: it says nothing either way
        return f"unfinished?: the run's report.json does not read back{resume}; its findings are those of its events."
    status, epochs = report.get("status"), report.get("epochs_run")
    if status not in UNFINISHED:
        return None
    of = f" of {planned}" if planned else ""
    why = "interrupted" if status == "interrupted" else "ended by an error"
    return f"unfinished: the run was {why} after {epochs}{of} epochs{resume}. The end-of-run verdicts are missing."
