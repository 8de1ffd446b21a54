"""TensorBoard HParams records: a run's hyperparameters and the metrics to show beside them.

TensorBoard's HParams dashboard treats every TensorBoard run holding a *session start* record as
one trial and finds its metrics in the runs below it: metric ``(group="validation",
tag="epoch/loss")`` of the session ``mlp_binary/20250101-120000`` is the last ``epoch/loss`` value
of the run ``mlp_binary/20250101-120000/validation``. So the records go into an events file of
their own at the *root* of the run directory, above ``train/`` and ``validation/`` (writing them
into ``train/`` would hide every validation metric from the dashboard).

Two records are written, at the start of the run:

- the session start (``hparams_pb``): the hyperparameter values, with the run's path below the
  logdir as its trial id, so each run is one row even when two runs share every value;
- an experiment config (``hparams_config_pb``): which hyperparameters exist, of which type, and
  which metrics to show. Without it TensorBoard offers every scalar tag of every run as a metric
  column (each per-step statistic, twice), which buries the epoch loss and accuracy.

TensorBoard reads one experiment config per logdir (the first it finds); trainkit's hyperparameter
names do not depend on the recipe, so any run's config describes the others, except for metrics
that only some recipes record.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2, summary_v2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from trainkit.errors import ArgumentError
from trainkit.writers.tensorboard import epoch_tag

HParamValue = str | float | int | bool
METRIC_GROUPS = ("train", "validation")
FILE_SUFFIX = ".hparams"


def clean_hparams(hparams: Mapping[str, Any]) -> dict[str, HParamValue]:
    """Checks and normalises hyperparameters to the types TensorBoard accepts.

    numpy scalars become Python numbers; ``None`` and containers are refused, because TensorBoard
    would refuse them later, on the writer thread, where the error is harder to trace.

    Args:
        hparams: Hyperparameter name -> value.

    Returns:
        A new dict of str, float, int or bool values.

    Raises:
        ArgumentError: ``bad-argument`` (a ``TypeError`` too) for a name that is not a non-empty
            string, or a value of another type.
    """
    clean: dict[str, HParamValue] = {}
    for name, value in hparams.items():
        if not isinstance(name, str) or not name:
            raise ArgumentError("bad-argument", f"hyperparameter names must be non-empty strings, got {name!r}.")
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(value, str | float | int | bool):
            raise ArgumentError("bad-argument", f"hyperparameter {name!r} = {value!r}: values must be str, float, int or bool, got {type(value).__name__}.")
        clean[name] = value
    return clean


def _data_type(value: HParamValue) -> int:
    if isinstance(value, bool):  # before int: bool is an int subclass
        return api_pb2.DATA_TYPE_BOOL
    if isinstance(value, int | float):
        return api_pb2.DATA_TYPE_FLOAT64
    return api_pb2.DATA_TYPE_STRING


def experiment_summary(hparams: Mapping[str, HParamValue], metrics: Iterable[str], groups: Iterable[str] = METRIC_GROUPS) -> summary_pb2.Summary:
    """The experiment config: hyperparameter names and types, and the metric columns.

    Args:
        hparams: The run's hyperparameters (their values give the column types).
        metrics: History keys without ``val_`` (``"loss"``, ``"accuracy"``); each becomes the
            ``epoch/<name>`` tag in every group.
        groups: The sub-runs holding the epoch values (``train``, ``validation``).

    Returns:
        A ``Summary`` holding the experiment record.
    """
    group_names = list(groups)
    columns = [
        summary_v2.Metric(epoch_tag(name), group=group, display_name=f"{group} {name}", dataset_type=summary_v2.Metric.VALIDATION if group == "validation" else summary_v2.Metric.TRAINING)
        for name in dict.fromkeys(metrics)
        for group in group_names
    ]
    # Booleans get their full domain; numbers and strings get only a type, since one run cannot
    # know the values other runs use (a Discrete domain would hide the rows outside it).
    params = [summary_v2.HParam(name, summary_v2.Discrete([False, True]) if isinstance(value, bool) else None) for name, value in hparams.items()]
    summary = _own(summary_v2.hparams_config_pb(params, columns, time_created_secs=time.time()))
    value = summary.value[0]
    experiment = metadata.parse_experiment_plugin_data(value.metadata.plugin_data.content)
    for info in experiment.hparam_infos:
        info.type = _data_type(hparams[info.name])
    value.metadata.CopyFrom(metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(experiment=experiment)))
    return summary


def session_start_summary(hparams: Mapping[str, HParamValue], trial_id: str, start_time_secs: float | None = None) -> summary_pb2.Summary:
    """The session start record: this run's hyperparameter values under ``trial_id``."""
    return _own(summary_v2.hparams_pb(dict(hparams), trial_id=trial_id, start_time_secs=start_time_secs))


def write_hparams(
    run_dir: str | Path,
    hparams: Mapping[str, Any],
    metrics: Iterable[str] = ("loss",),
    *,
    trial_id: str | None = None,
    start_time_secs: float | None = None,
) -> Path:
    """Writes the experiment config and the session start into ``<run_dir>/events.*.hparams``.

    Two small events, written and closed at once: nothing has to stay open during training.

    Args:
        run_dir: The run directory (the parent of ``train/`` and ``validation/``).
        hparams: Hyperparameter name -> str, float, int or bool.
        metrics: History keys to show as metric columns (``"loss"``, ``"accuracy"``).
        trial_id: The row's name in the dashboard; defaults to ``<recipe>/<timestamp>``, the run
            directory's last two path parts.
        start_time_secs: When the run started; defaults to now.

    Returns:
        The path of the events file.
    """
    run_dir = Path(run_dir)
    clean = clean_hparams(hparams)
    trial = trial_id or f"{run_dir.parent.name}/{run_dir.name}"
    writer = EventFileWriter(str(run_dir), filename_suffix=FILE_SUFFIX)
    try:
        for summary in (experiment_summary(clean, metrics), session_start_summary(clean, trial, start_time_secs)):
            writer.add_event(event_pb2.Event(wall_time=time.time(), step=0, summary=summary))
    finally:
        writer.close()
    return Path(writer._file_name)  # no public accessor; the name holds host, pid and time


#: The file a run's ending record goes into, one per run (replaced when a resumed run ends again).
END_FILE_SUFFIX = ".hparams_end"
#: How a run ended (``trainer.stop_reason``; ``None``: all its epochs) -> its HParams status. An
#: interrupted run has none: it may still be resumed.
_STATUSES = {None: api_pb2.STATUS_SUCCESS, "stopped": api_pb2.STATUS_SUCCESS, "nan-loss": api_pb2.STATUS_FAILURE,
             "failed": api_pb2.STATUS_FAILURE}


def write_session_end(run_dir: str | Path, stop_reason: str | None) -> Path | None:
    """Records how the run ended for the HParams dashboard (success, failure), replacing an earlier end.

    Without it every run was of unknown status, and filtering the dashboard to the runs that
    finished showed none. TensorBoard reads the first end record of a run, so a resumed run's
    new ending replaces the old file; an interrupted run only loses its old one.

    Returns:
        The events file written, or ``None`` for an interrupted run.
    """
    run_dir = Path(run_dir)
    for old in run_dir.glob(f"events.out.tfevents.*{END_FILE_SUFFIX}"):
        old.unlink(missing_ok=True)
    status = _STATUSES.get(stop_reason)
    if status is None:
        return None
    writer = EventFileWriter(str(run_dir), filename_suffix=END_FILE_SUFFIX)
    try:
        ended = plugin_data_pb2.HParamsPluginData(session_end_info=plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time()))
        value = summary_pb2.Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=metadata.create_summary_metadata(ended))
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=0, summary=summary_pb2.Summary(value=[value])))
    finally:
        writer.close()
    return Path(writer._file_name)


def _own(proto: Any) -> summary_pb2.Summary:
    """tensorboard's helpers return TensorFlow's proto classes when TensorFlow is installed."""
    if isinstance(proto, summary_pb2.Summary):
        return proto
    return summary_pb2.Summary.FromString(proto.SerializeToString())
