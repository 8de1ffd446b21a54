"""tf.distribute: MirroredStrategy over two logical CPUs and two MultiWorkerMirrored processes.

Logical devices and the multi-worker cluster must be set up before TensorFlow initialises, which
this test process has already done, so each run happens in a subprocess
(tests/distributed_worker.py), bounded by a timeout and killed in a ``finally``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainkit import distribute
from trainkit.errors import ArgumentError, DataError
from trainkit.recipe import Recipe

WORKER = Path(__file__).with_name("distributed_worker.py")
ROOT = WORKER.parent.parent

RECIPE = """
name: dist
task: binary
data: {source: generator, generator: learnable_binary, rows: 403, features: 6, seed: 0}
preprocessing: {standardize_inputs: true}
model:
  layers:
    - {type: dense, units: 16, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {name: adam, learning_rate: 0.01}
metrics: [accuracy]
training: {epochs: 3, batch_size: 32, validation_split: 0.2, seed: 0, distribute: DIST}
logging: {histograms_every: epoch}
"""
# Two workers reduce float sums in a different order than one device: allow float32 rounding.
MULTI_WORKER_TOLERANCE = 1e-5


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}, **extra)
    return env


def _run(args: list[str], timeout: float, **env: str) -> None:
    proc = subprocess.Popen([sys.executable, str(WORKER), *args], env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def test_recipe_accepts_distribute_and_refuses_unknown_names():
    base = {"task": "binary", "model": {"layers": [{"type": "dense", "units": 1, "activation": "sigmoid"}]}, "loss": "binary_crossentropy"}
    assert Recipe.from_dict(base).training.distribute == "none"
    assert Recipe.from_dict({**base, "training": {"distribute": "mirrored"}}).training.distribute == "mirrored"
    with pytest.raises(Exception, match="distribute"):
        Recipe.from_dict({**base, "training": {"distribute": "tpu"}})
    assert distribute.strategy_from_name("none") is None
    assert not distribute.is_distributed(None)


def test_is_chief_from_tf_config(monkeypatch):
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 1}}))
    assert not distribute.is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}}))
    assert distribute.is_chief()
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {**cluster, "chief": ["127.0.0.1:3"]}, "task": {"type": "worker", "index": 0}}))
    assert not distribute.is_chief()
    monkeypatch.delenv("TF_CONFIG")
    assert distribute.is_chief()


@pytest.mark.parametrize(("value", "says"), [("{bad json", "not valid JSON"), ("[1, 2]", "JSON object"), ('{"task": "worker"}', "JSON object")])
def test_a_malformed_tf_config_is_one_coded_error(monkeypatch, value, says):
    # TensorFlow's resolver fails on it with a JSONDecodeError traceback, or later still.
    monkeypatch.setenv("TF_CONFIG", value)
    for call in (distribute.is_chief, lambda: distribute.strategy_from_name("multi_worker")):
        with pytest.raises(ArgumentError) as info:
            call()
        assert info.value.code == "bad-tf-config" and says in info.value.message


@pytest.mark.parametrize(("task", "cluster", "says"), [
    ({"type": "worker", "index": 3}, {"worker": ["127.0.0.1:1"]}, "`task_id` 3 exceeds the maximum id of worker"),
    ({"type": "chief", "index": 0}, {"worker": ["127.0.0.1:1"]}, "'chief' not found"),
    ({"type": "worker", "index": 0}, {"worker": "127.0.0.1:1"}, "must be a list"),
])
def test_a_tf_config_that_places_the_process_nowhere_in_its_cluster_is_one_coded_error(monkeypatch, task, cluster, says):
    # Valid JSON, so tf_config() passed it, and TensorFlow's resolver then raised a ValueError or
    # TypeError traceback from deep inside MultiWorkerMirroredStrategy.
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
    with pytest.raises(ArgumentError) as info:
        distribute.strategy_from_name("multi_worker")
    assert info.value.code == "bad-tf-config" and says in info.value.message and "It should look like" in info.value.message


def test_mirrored_two_cpus_matches_one_device(tmp_path):
    out = tmp_path / "mirrored.json"
    _run(["mirrored", str(out)], timeout=240)
    result = json.loads(out.read_text())
    assert result["replicas"] == 2
    single, mirrored = result["single"], result["mirrored"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(mirrored["history"][key], single["history"][key], rtol=0, atol=1e-5, err_msg=key)
    assert single["history"]["loss"][0] - single["history"]["loss"][-1] > 0.05  # it trained
    assert mirrored["global_step"] == single["global_step"] == 4 * 7
    for a, b in zip(single["weights"], mirrored["weights"], strict=True):
        np.testing.assert_allclose(b, a, atol=1e-5)
    # Statistics of the all-reduced gradient / global batch equal one device's (layer names differ
    # only by the Keras auto-numbering of the second model).
    renamed = {k.replace("dense_2", "dense").replace("dense_3", "dense_1"): v for k, v in mirrored["steps"].items()}
    for name in ("loss", "grad_norm/global", "grad_norm/dense/kernel", "update_ratio/dense/kernel", "activation/dense/mean", "activation/dense/std", "activation/output/mean"):
        np.testing.assert_allclose(renamed[name], single["steps"][name], rtol=1e-4, atol=1e-6, err_msg=name)
    # dead_fraction over the global batch, not the mean of each replica's (8 rows each, and 6/5 in
    # the last batch): that was 0.57 against one device's 0.35 here, a false dead-relu finding.
    dead = result["dead"]
    assert len(dead["single"]) == 13 and 0.1 < np.mean(dead["single"]) < 0.9
    np.testing.assert_allclose(dead["mirrored"], dead["single"], rtol=0, atol=1e-6)
    # Losses reduced otherwise than by the mean over rows: "sum" came out halved over two replicas
    # (22.0 -> 11.3), "mean_with_sample_weight" weighed each replica by its rows, not its weights,
    # a mean over a mask's positions by its rows, not its unmasked positions (1.089 against 1.112).
    for reduction, runs in result["reductions"].items():
        for key in runs["single"]["history"]:
            np.testing.assert_allclose(runs["mirrored"]["history"][key], runs["single"]["history"][key], rtol=1e-5, err_msg=f"{reduction} {key}")
        for a, b in zip(runs["single"]["weights"], runs["mirrored"]["weights"], strict=True):
            np.testing.assert_allclose(b, a, atol=1e-5, err_msg=reduction)
    # Statistics over a mask's positions: each replica's over its own, combined by rows, were not
    # the global batch's (nonpositive_fraction 0.47 against 0.43 with 6 one-token rows among 12).
    masked = result["masked_statistics"]
    assert set(masked["mirrored"]) == set(masked["single"]) >= {"activation/per_step/mean", "activation/per_step/std", "activation/per_step/nonpositive_fraction"}
    for name, values in masked["single"].items():
        np.testing.assert_allclose(masked["mirrored"][name], values, rtol=1e-5, atol=1e-7, err_msg=name)
    # BatchNormalization's moving statistics (created with no aggregation) were updated on each
    # replica from its own rows: the copies drifted apart, and the replica handed no row of the
    # last batch set its copy to NaN, so every validation loss read NaN. Averaged by rows, the
    # moving mean is one device's (the layer before it frozen here), the same on every replica.
    norm = result["batchnorm"]
    assert np.isfinite(norm["mirrored"]["history"]["val_loss"]).all()
    for copies in norm["mirrored"]["copies"]:
        assert len(copies) == 2 and np.isfinite(copies).all()
        np.testing.assert_array_equal(copies[1], copies[0])
    np.testing.assert_allclose(norm["mirrored"]["copies"][0][0], norm["single"]["copies"][0][0], rtol=1e-5, atol=1e-6)


def test_mirrored_two_outputs_match_one_device_per_output(tmp_path):
    # Each replica's per-output losses were handed to update_metrics through the trainer, and the
    # replicas' threads took each other's; an unbuilt subclassed model was built unmirrored.
    out = tmp_path / "outputs.json"
    _run(["outputs", str(out)], timeout=240)
    result = json.loads(out.read_text())
    single, mirrored = result["single"], result["mirrored"]
    assert set(mirrored) == set(single) >= {"a_loss", "b_loss", "val_a_loss", "a_mae"}
    for key in single:
        np.testing.assert_allclose(mirrored[key], single[key], rtol=1e-5, err_msg=key)
    np.testing.assert_allclose(np.add(mirrored["a_loss"], mirrored["b_loss"]), mirrored["loss"], rtol=1e-5)
    subclassed = result["subclassed"]
    assert {"output_0_loss", "output_1_loss"} <= set(subclassed) and np.isfinite(subclassed["loss"]).all()


def test_mirrored_recipes_one_after_another_in_one_process(tmp_path):
    # Each recipe made its own MirroredStrategy, which numbers its collective ops from the same keys
    # as the first, and TensorFlow keeps a key's first shape: the 8-unit model's first step failed
    # with "Shape mismatch in the collective instance ... expected shape [65] ... [33]" (model.fit
    # too). The recipes now share one; a Trainer's own second strategy fails with a coded error.
    paths = []
    for units in (4, 8):
        paths.append(tmp_path / f"units{units}.yaml")
        paths[-1].write_text(RECIPE.replace("DIST", "mirrored").replace("units: 16", f"units: {units}").replace("epochs: 3", "epochs: 1"))
    out = tmp_path / "sequence.json"
    _run(["sequence", *map(str, paths), str(tmp_path / "runs"), str(out)], timeout=240)
    result = json.loads(out.read_text())
    assert result["replicas"] == [2, 2]
    for history in result["histories"]:
        assert len(history["loss"]) == 1 and np.isfinite(history["loss"] + history["val_loss"]).all()
    error = result["error"]
    assert error is not None and error["code"] == "strategy-collective-mismatch"
    assert "[129]" in error["message"] and "pass it to every Trainer" in error["message"]


def test_multi_worker_two_processes_match_one_process_and_only_chief_writes(tmp_path):
    recipe_one = tmp_path / "one.yaml"
    recipe_one.write_text(RECIPE.replace("DIST", "none"))
    recipe_multi = tmp_path / "multi.yaml"
    recipe_multi.write_text(RECIPE.replace("DIST", "multi_worker"))
    _run(["recipe", str(recipe_one), str(tmp_path / "one"), str(tmp_path / "one.json")], timeout=120)

    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    try:
        for index in range(2):
            config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            logdir, out = tmp_path / f"w{index}", tmp_path / f"w{index}.json"
            scratch = tmp_path / f"tmp{index}"  # the process's own temporary directory
            scratch.mkdir()
            procs.append(subprocess.Popen([sys.executable, str(WORKER), "recipe", str(recipe_multi), str(logdir), str(out)],
                                          env=_env(TF_CONFIG=config, TMPDIR=str(scratch)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for proc in procs:
            _out, err = proc.communicate(timeout=150)
            assert proc.returncode == 0, err[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    one = json.loads((tmp_path / "one.json").read_text())
    chief, other = (json.loads((tmp_path / f"w{i}.json").read_text()) for i in range(2))
    assert chief["chief"] and not other["chief"]
    for key in ("loss", "val_loss", "accuracy"):
        np.testing.assert_allclose(chief["history"][key], one["history"][key], rtol=0, atol=MULTI_WORKER_TOLERANCE, err_msg=key)
        np.testing.assert_allclose(other["history"][key], chief["history"][key], rtol=0, atol=1e-7, err_msg=key)
    run_dir = Path(chief["run_dir"])
    assert (run_dir / "report.json").exists() and list((run_dir / "train").glob("events.out.tfevents.*"))
    assert list((run_dir / "checkpoints").glob("*.index"))
    # The other worker wrote nothing: no run directory under its logdir, and its scratch run
    # directory and checkpoint copies are gone once it exits.
    assert not [p for p in (tmp_path / "w1").rglob("*")]  # check_writable may create the root itself
    assert not Path(other["run_dir"]).exists()
    assert not [p.name for p in (tmp_path / "tmp1").iterdir() if p.name.startswith("trainkit-")]
    assert "the chief worker writes the run" in other["summary"][-1]
    assert chief["summary"][-1].startswith(f"run written to {run_dir}")
    # The chief alone writes model.keras, compiled: its compile in the strategy's scope waited on
    # the other worker's collective broadcast (14 s, until it was called dead) and was dropped.
    assert chief["model_file_compiled"] is True and other["model_file_compiled"] is None


def test_user_mistakes_under_a_strategy_are_coded_errors():
    # A model built outside the scope was a plain ValueError; a train_step of its own returning no
    # dict was a raw TypeError from dict(...) (single-device: bad-step-output).
    import keras
    import tensorflow as tf

    from trainkit import Trainer

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    outside = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(ArgumentError) as info:
        Trainer(outside, loss="mse", optimizer="sgd", task="regression", strategy=strategy, logdir=None)
    assert info.value.code == "model-outside-strategy-scope"

    # An optimizer instance made outside the scope was TensorFlow's RuntimeError ("Mixing
    # different tf.distribute.Strategy objects") when fit built its slots.
    with strategy.scope():
        inside = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(ArgumentError) as info:
        Trainer(inside, loss="mse", optimizer=keras.optimizers.SGD(0.1), task="regression", strategy=strategy, logdir=None)
    assert info.value.code == "optimizer-outside-strategy-scope"
    with strategy.scope():
        optimizer = keras.optimizers.SGD(0.1)
    Trainer(inside, loss="mse", optimizer=optimizer, task="regression", strategy=strategy, logdir=None)  # made inside: accepted

    # A dataset the strategy distributed already was "an object that can only be iterated, not data".
    rows = np.zeros((8, 3), np.float32)
    distributed = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices((rows, rows[:, :1])).batch(4))
    with strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    with pytest.raises(DataError) as info:
        Trainer(model, loss="mse", optimizer="sgd", task="regression", strategy=strategy, logdir=None).fit(distributed, epochs=1, verbose=0)
    assert info.value.code == "unsupported-input" and "pass the tf.data.Dataset itself" in info.value.message

    class ReturnsATensor(Trainer):
        def train_step(self, batch):
            x, y = batch[:2]
            return tf.reduce_mean(tf.square(self.model(x) - y))

    with strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    trainer = ReturnsATensor(model, loss="mse", optimizer="sgd", task="regression", strategy=strategy, logdir=None, diagnose=False)
    x, y = np.zeros((8, 3), np.float32), np.zeros((8, 1), np.float32)
    with pytest.raises(ArgumentError) as info:
        trainer.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert info.value.code == "bad-step-output"


def test_replica_states_leave_out_a_frozen_layers_weights():
    # A frozen layer's weights are non-trainable too, but no step changes them: averaged after every
    # replicated step, a frozen backbone's were all-reduced for nothing (0.86 s -> 1.19 s, 3 epochs).
    import keras

    keras.utils.set_random_seed(0)
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="inner_dense")], name="inner")
    inner.trainable = False
    frozen_norm = keras.layers.BatchNormalization(name="frozen_norm")
    frozen_norm.trainable = False
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, trainable=False, name="frozen"), inner,
                              keras.layers.BatchNormalization(name="norm"), frozen_norm, keras.layers.Dense(1, name="head")])
    norm = model.get_layer("norm")
    expected = [norm.moving_mean, norm.moving_variance, frozen_norm.moving_mean, frozen_norm.moving_variance]
    assert [id(v) for v in distribute.replica_states(model)] == [id(v) for v in expected]
