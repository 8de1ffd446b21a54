"""A real TensorBoard server (the tensorboard package's own program) over a logdir trainkit wrote.

The runs come from a real `trainkit compare` of a two-value learning-rate sweep; the server listens
on 127.0.0.1 only and is always stopped. Every check asks the server's HTTP API (what the browser
asks), polling until the server's background loader has read the event files, within a deadline.

Asserted: the recipe text and the diagnosis report, epoch and step scalars with the per-step
gradient/update/activation statistics, histograms, and the HParams records.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from trainkit.board import HOST, TensorBoardServer
from trainkit.compare import CompareRow, compare, expand_all
from trainkit.recipe import load_recipe

DEADLINE = 90.0  # seconds; a cold TensorBoard start on a loaded 2-core machine takes ~10
LEARNING_RATES = [0.05, 0.001]
RECIPE = {
    "name": "tb",
    "task": "binary",
    "data": {"source": "generator", "generator": "learnable_binary", "rows": 120, "features": 4, "seed": 0},
    "preprocessing": {"standardize_inputs": True},
    "model": {"layers": [{"type": "dense", "units": 4, "activation": "relu"}, {"type": "dense", "units": 1, "activation": "sigmoid"}]},
    "loss": "binary_crossentropy",
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "metrics": ["accuracy"],
    "training": {"epochs": 2, "batch_size": 32, "jit_compile": False},
    "sweep": {"optimizer.learning_rate": LEARNING_RATES},
}

T = TypeVar("T")


def eventually(check: Callable[[], T], deadline: float = DEADLINE) -> T:
    """Runs ``check`` until it passes (TensorBoard loads event files in the background)."""
    end = time.monotonic() + deadline
    while True:
        try:
            return check()
        except (AssertionError, KeyError, OSError):
            if time.monotonic() > end:
                raise
        time.sleep(0.5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[CompareRow]]:
    root = tmp_path_factory.mktemp("tensorboard")
    path = root / "tb.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    logdir = root / "runs"
    rows = compare(expand_all([load_recipe(path)]), logdir=logdir)
    assert [row.error for row in rows] == [None, None]
    return logdir, rows


@pytest.fixture(scope="module")
def server(trained: tuple[Path, list[CompareRow]]) -> Iterator[TensorBoardServer]:
    board = TensorBoardServer(trained[0], reload_interval=1)
    assert board.command()[board.command().index("--host") + 1] == "127.0.0.1"
    try:
        board.start()
        board.wait_ready(DEADLINE)
        yield board
    finally:
        board.stop()
    assert not board.running()


def sessions(trained: tuple[Path, list[CompareRow]]) -> list[str]:
    """TensorBoard's run name of each run directory (its path below the logdir)."""
    logdir, rows = trained
    return [Path(row.run_dir).relative_to(logdir).as_posix() for row in rows if row.run_dir]


def query(path: str, **params: str) -> str:
    return f"{path}?{urllib.parse.urlencode(params)}"


def test_server_lists_every_run_and_its_splits(server, trained):
    expected = {f"{s}{suffix}" for s in sessions(trained) for suffix in ("", "/train", "/validation")}

    def check() -> None:
        assert expected <= set(server.get("/data/runs"))

    eventually(check)


def test_plugins_with_data_are_enabled(server, trained):
    wanted = ["scalars", "text", "hparams", "histograms"]

    def check() -> dict[str, Any]:
        listing = server.get("/data/plugins_listing")
        assert all(listing[name]["enabled"] for name in wanted), {k: listing[k]["enabled"] for k in wanted if k in listing}
        return listing

    eventually(check)


def test_epoch_and_step_scalars_are_served_with_the_exact_epoch_values(server, trained):
    logdir, rows = trained
    train_tags = {"epoch/loss", "epoch/accuracy", "epoch/learning_rate", "step/loss"}
    validation_tags = {"epoch/loss", "epoch/accuracy"}

    def check() -> dict[str, Any]:
        tags = server.get("/data/plugin/scalars/tags")
        for session in sessions(trained):
            assert train_tags <= set(tags[f"{session}/train"]), sorted(tags.get(f"{session}/train", {}))
            assert validation_tags <= set(tags[f"{session}/validation"])
            names = set(tags[f"{session}/train"])
            for prefix in ("grad_norm/", "update_ratio/", "activation/"):
                assert any(t.startswith(prefix) for t in names), (prefix, sorted(names))
        return tags

    eventually(check)
    for session, row in zip(sessions(trained), rows, strict=True):
        history = json.loads((logdir / session / "report.json").read_text())["history"]
        for split, key in (("train", "loss"), ("validation", "val_loss")):
            points = server.get(query("/data/plugin/scalars/scalars", run=f"{session}/{split}", tag="epoch/loss"))
            assert [p[1] for p in points] == [0, 1]
            assert [p[2] for p in points] == pytest.approx(history[key], rel=1e-6)
        steps = server.get(query("/data/plugin/scalars/scalars", run=f"{session}/train", tag="step/loss"))
        assert len(steps) == 2 * 3  # 96 training rows / 32 per batch, two epochs
        assert row.final["val_loss"] == pytest.approx(history["val_loss"][-1])


def test_histograms_of_weights_gradients_and_activations_are_served(server, trained):
    def check() -> None:
        tags = server.get("/data/plugin/histograms/tags")
        for session in sessions(trained):
            names = set(tags[f"{session}/train"])
            for kind in ("weights", "gradients", "activations"):
                assert any(t.startswith(f"histograms/{kind}/") for t in names), (kind, sorted(names))

    eventually(check)
    session = sessions(trained)[0]
    tag = next(t for t in server.get("/data/plugin/histograms/tags")[f"{session}/train"] if t.startswith("histograms/weights/"))
    assert server.get(query("/data/plugin/histograms/histograms", run=f"{session}/train", tag=tag))


def test_recipe_text_and_report_text_are_served(server, trained):
    def check() -> dict[str, list[str]]:
        tags = server.get("/data/plugin/text/tags")
        for session in sessions(trained):
            names = tags[f"{session}/train"]
            assert any(t.split("/")[0] == "recipe" for t in names), names
            assert any(t.split("/")[0] == "report" for t in names), names
        return tags

    tags = eventually(check)
    for session, rate in zip(sessions(trained), LEARNING_RATES, strict=True):
        tag = next(t for t in tags[f"{session}/train"] if t.split("/")[0] == "recipe")
        (entry,) = server.get(query("/data/plugin/text/text", run=f"{session}/train", tag=tag))
        assert "task: binary" in entry["text"] and f"learning_rate: {rate}" in entry["text"]


def test_hparams_dashboard_has_every_run_with_its_values_and_final_metrics(server, trained):
    _, rows = trained
    body = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [],
        "startIndex": 0,
        "sliceSize": 100,
    }

    def check() -> tuple[dict[str, Any], dict[str, Any]]:
        experiment = server.post("/data/plugin/hparams/experiment", {"experimentName": ""})
        groups = server.post("/data/plugin/hparams/session_groups", body)
        assert len(groups.get("sessionGroups", [])) == len(rows), groups
        return experiment, groups

    experiment, groups = eventually(check)
    infos = {info["name"]: info for info in experiment["hparamInfos"]}
    assert set(infos) == set(rows[0].hparams)  # Recipe.hparams(): the same keys for every recipe
    assert {"learning_rate", "optimizer", "batch_size", "layers", "kernel_initializer", "dropout", "standardize_inputs"} <= set(infos)
    assert infos["learning_rate"]["type"] == "DATA_TYPE_FLOAT64"
    assert infos["optimizer"]["type"] == "DATA_TYPE_STRING"
    assert infos["standardize_inputs"]["type"] == "DATA_TYPE_BOOL"
    metrics = {(m["name"]["group"], m["name"]["tag"]) for m in experiment["metricInfos"]}
    assert {("train", "epoch/loss"), ("validation", "epoch/loss"), ("train", "epoch/accuracy"), ("validation", "epoch/accuracy")} == metrics

    by_name = {group["name"]: group for group in groups["sessionGroups"]}
    for session, row, rate in zip(sessions(trained), rows, LEARNING_RATES, strict=True):
        group = by_name[session]
        assert group["hparams"]["learning_rate"] == pytest.approx(rate)
        assert group["hparams"]["optimizer"] == "adam" and group["hparams"]["layers"] == "4-1"
        values = {(m["name"]["group"], m["name"]["tag"]): m["value"] for m in group["metricValues"]}
        assert values[("validation", "epoch/loss")] == pytest.approx(row.final["val_loss"], rel=1e-6)
        assert values[("train", "epoch/accuracy")] == pytest.approx(row.final["accuracy"], rel=1e-6)


def test_one_run_s_own_directory_served_shows_its_hparams_metrics(trained):
    # Served as the logdir itself the run was ".", and every HParams metric read empty (TensorBoard
    # looked under "./train" for what it calls "train").
    _, rows = trained
    run_dir = Path(rows[0].run_dir)
    body = {"experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
            "colParams": [], "startIndex": 0, "sliceSize": 100}
    board = TensorBoardServer(run_dir, reload_interval=1)
    try:
        board.start()
        board.wait_ready(DEADLINE)

        def check() -> dict[str, Any]:
            groups = board.post("/data/plugin/hparams/session_groups", body)["sessionGroups"]
            assert len(groups) == 1 and groups[0]["metricValues"], groups
            return groups[0]

        group = eventually(check)
        values = {(m["name"]["group"], m["name"]["tag"]): m["value"] for m in group["metricValues"]}
        assert values[("validation", "epoch/loss")] == pytest.approx(rows[0].final["val_loss"], rel=1e-6)
    finally:
        link = board._link_dir
        board.stop()
    assert link is not None and not link.exists() and (run_dir / "train").is_dir()  # the link gone, the run kept


# ------------------------------------------------------------------ the `trainkit tensorboard` command


def _children(pid: int) -> list[int]:
    """Child process ids of ``pid`` (Linux /proc; empty elsewhere)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.parent.name))
    return found


def _is_tensorboard(pid: int) -> bool:
    """Whether ``pid`` is (still) a TensorBoard server process."""
    try:
        return b"tensorboard.main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST, port)) == 0


def _default_sigint() -> None:
    # A fresh session (so the finally below can kill the whole tree) with Ctrl-C's default action,
    # even when the test runner itself was started with SIGINT ignored (a background job).
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_trainkit_tensorboard_prints_the_url_serves_and_stops_on_ctrl_c(trained):
    logdir, _ = trained
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainkit.cli", "tensorboard", str(logdir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    children: list[int] = []
    try:
        line = lines.get(timeout=DEADLINE)
        assert line.startswith("TensorBoard at http://127.0.0.1:") and str(logdir) in line, line
        url = line.split()[2]
        port = int(urllib.parse.urlparse(url).port or 0)
        children = _children(proc.pid)
        client = TensorBoardServer(logdir, port=port)  # only its HTTP helpers: never started
        eventually(lambda: set(sessions(trained)) <= set(client.get("/data/runs")))

        proc.send_signal(signal.SIGINT)  # to trainkit alone: it must stop its server itself
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopping TensorBoard" in err
        assert not _port_open(port)
        if Path("/proc").is_dir():  # the server child is gone, not orphaned
            assert children and not any(_is_tensorboard(child) for child in children)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for child in children:
            if _is_tensorboard(child):
                os.kill(child, signal.SIGKILL)
