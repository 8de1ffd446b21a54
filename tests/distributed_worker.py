"""Helper process for tests/test_distribute.py (devices must be configured before TF starts).

``python tests/distributed_worker.py mirrored OUT.json``: trains a deterministic MLP on one device
and under a MirroredStrategy over two logical CPU devices, writes both runs' epoch values and
per-step statistics.

``python tests/distributed_worker.py outputs OUT.json``: models with two outputs, mirrored.

``python tests/distributed_worker.py sequence RECIPE_A RECIPE_B LOGDIR OUT.json``: trains two mirrored
recipes one after the other in this process, then a Trainer under a MirroredStrategy of its own.

``python tests/distributed_worker.py recipe RECIPE LOGDIR OUT.json``: trains a recipe (with
``TF_CONFIG`` set by the test for multi-worker runs) and writes its history and run directory.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _mirrored(out: str) -> None:
    import keras
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from trainkit import Trainer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(203, 6)).astype("float32")  # 203 rows: a partial last batch of 11
    y = (x[:, :1] - 0.5 * x[:, 1:2] > 0).astype("float32")

    def run(strategy: tf.distribute.Strategy | None) -> dict:
        with strategy.scope() if strategy is not None else tf.init_scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
        trainer = Trainer(model, loss="binary_crossentropy", optimizer={"name": "adam", "learning_rate": 0.01}, task="binary",
                          metrics=["accuracy"], seed=1, jit_compile=False, diagnose=False, histograms_every=None, strategy=strategy)
        history = trainer.fit(x, y, epochs=4, batch_size=32, validation_data=(x[:50], y[:50]), verbose=0)
        table: dict[str, list[float]] = {}
        for _step, name, value in trainer.step_table():
            table.setdefault(name, []).append(value)
        return {"history": history.history, "steps": table, "global_step": int(trainer.global_step.numpy()),
                "weights": [w.tolist() for w in model.get_weights()]}

    def dead_fractions(strategy: tf.distribute.Strategy | None) -> list[float]:
        """Each step's dead_fraction of a ReLU layer with a negative bias (some units dead)."""
        with strategy.scope() if strategy is not None else tf.init_scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(32, activation="relu", bias_initializer=keras.initializers.Constant(-0.75)),
                                      keras.layers.Dense(1, activation="sigmoid")])
        trainer = Trainer(model, loss="binary_crossentropy", optimizer={"name": "sgd", "learning_rate": 0.01}, task="binary",
                          seed=1, jit_compile=False, diagnose=False, histograms_every=None, strategy=strategy)
        trainer.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
        return [value for _step, name, value in trainer.step_table() if name.endswith("/dead_fraction")]

    def reduced(strategy: tf.distribute.Strategy | None, reduction: str) -> dict:
        """A loss of this reduction, sample-weighted, on 201 rows in batches of 40 (the last of one row)."""
        with strategy.scope() if strategy is not None else tf.init_scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
            loss = keras.losses.BinaryCrossentropy(reduction=reduction)
        trainer = Trainer(model, loss=loss, optimizer={"name": "sgd", "learning_rate": 0.01}, task="binary", seed=1, jit_compile=False,
                          diagnose=False, histograms_every=None, strategy=strategy)
        weights = np.linspace(0.2, 2.0, 201).astype("float32")
        history = trainer.fit(x[:201], y[:201], epochs=2, batch_size=40, shuffle=False, sample_weight=weights,
                              validation_data=(x[:50], y[:50], weights[:50]), verbose=0)
        return {"history": history.history, "weights": [w.tolist() for w in model.get_weights()]}

    def masked(strategy: tf.distribute.Strategy | None) -> dict:
        """A per-timestep mse behind Masking: the first 5 rows of every batch of 12 end early."""
        xs = masked_data[0]
        with strategy.scope() if strategy is not None else tf.init_scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((5, 3)), keras.layers.Masking(0.0), keras.layers.Dense(4), keras.layers.Dense(1)])
        trainer = Trainer(model, loss="mse", optimizer={"name": "sgd", "learning_rate": 0.05}, task="regression", seed=1, jit_compile=False,
                          diagnose=False, histograms_every=None, strategy=strategy)
        history = trainer.fit(xs, masked_data[1], epochs=2, batch_size=12, shuffle=False, verbose=0)
        return {"history": history.history, "weights": [w.tolist() for w in model.get_weights()]}

    def masked_statistics(strategy: tf.distribute.Strategy | None) -> dict[str, list[float]]:
        """Activation statistics behind Embedding(mask_zero=True): the first 6 rows of 45 one token long."""
        ids = np.zeros((45, 8), "int32")
        for row, length in enumerate(np.where(np.arange(45) < 6, 1, np.random.default_rng(2).integers(1, 9, size=45))):
            ids[row, :length] = np.random.default_rng(row).integers(1, 20, size=length)
        with strategy.scope() if strategy is not None else tf.init_scope():
            keras.utils.set_random_seed(0)
            inputs = keras.Input((8,), dtype="int32")
            hidden = keras.layers.LSTM(6, return_sequences=True)(keras.layers.Embedding(20, 4, mask_zero=True)(inputs))
            hidden = keras.layers.Dense(5, activation="relu", name="per_step")(hidden)
            model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(keras.layers.GlobalAveragePooling1D()(hidden)))
        trainer = Trainer(model, loss="binary_crossentropy", optimizer={"name": "sgd", "learning_rate": 0.1}, task="binary", seed=1,
                          jit_compile=False, diagnose=False, histograms_every=None, strategy=strategy)
        trainer.fit(ids, (ids[:, :1] % 2).astype("float32"), epochs=1, batch_size=12, shuffle=False, verbose=0)
        table: dict[str, list[float]] = {}
        for _step, name, value in trainer.step_table():
            if name.startswith("activation/per_step/"):
                table.setdefault(name, []).append(value)
        return table

    def batchnorm(strategy: tf.distribute.Strategy | None) -> dict:
        """BatchNormalization's moving statistics, the layer before it frozen: 101 rows in batches of
        20, the last of one row (a replica gets none)."""
        with strategy.scope() if strategy is not None else tf.init_scope():
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu", trainable=False),
                                      keras.layers.BatchNormalization(name="norm"),
                                      keras.layers.Dense(1, activation="sigmoid")])
        trainer = Trainer(model, loss="binary_crossentropy", optimizer={"name": "sgd", "learning_rate": 0.01}, task="binary", seed=1,
                          jit_compile=False, diagnose=False, histograms_every=None, strategy=strategy)
        history = trainer.fit(x[:101], y[:101], epochs=2, batch_size=20, shuffle=False, validation_data=(x[:50], y[:50]), verbose=0)
        copies = [[t.numpy().tolist() for t in getattr(v.value, "values", [v.value])] for v in model.get_layer("norm").non_trainable_variables]
        return {"history": history.history, "copies": copies}

    masked_data = (rng.normal(size=(48, 5, 3)).astype("float32"), rng.normal(size=(48, 5, 1)).astype("float32"))
    masked_data[0][np.arange(48) % 12 < 5, 2:] = 0.0

    # One strategy for every run: a second MirroredStrategy in the process reuses the first one's
    # collective keys, and a model of other shapes then fails in TensorFlow (model.fit too).
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"replicas": strategy.num_replicas_in_sync, "single": run(None), "mirrored": run(strategy),
              "dead": {"single": dead_fractions(None), "mirrored": dead_fractions(strategy)},
              "reductions": {r: {"single": reduced(None, r), "mirrored": reduced(strategy, r)} for r in ("sum", "mean_with_sample_weight")}}
    result["reductions"]["masked"] = {"single": masked(None), "mirrored": masked(strategy)}
    result["masked_statistics"] = {"single": masked_statistics(None), "mirrored": masked_statistics(strategy)}
    result["batchnorm"] = {"single": batchnorm(None), "mirrored": batchnorm(strategy)}
    with open(out, "w") as f:
        json.dump(result, f)


def _outputs(out: str) -> None:
    """Two outputs under a MirroredStrategy: a Functional model (its per-output losses against
    one device) and an unbuilt subclassed one, built when fit counts its outputs."""
    import keras
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from trainkit import Trainer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    ya, yb = rng.normal(size=(64, 1)).astype("float32"), 10 * rng.normal(size=(64, 1)).astype("float32")

    class TwoHeads(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = keras.layers.Dense(1), keras.layers.Dense(1)

        def call(self, inputs, training=False):
            return self.a(inputs), self.b(inputs)

    def functional() -> keras.Model:
        inputs = keras.Input((4,))
        return keras.Model(inputs, [keras.layers.Dense(1, name="a")(inputs), keras.layers.Dense(1, name="b")(inputs)])

    def run(build, strategy: tf.distribute.Strategy | None) -> dict:
        with strategy.scope() if strategy is not None else tf.init_scope():
            keras.utils.set_random_seed(0)
            model = build()
        trainer = Trainer(model, loss="mse", optimizer={"name": "sgd", "learning_rate": 0.01}, task="regression", metrics=["mae"],
                          seed=1, jit_compile=False, diagnose=False, histograms_every=None, strategy=strategy)
        return trainer.fit(x, [ya, yb], epochs=2, batch_size=16, shuffle=False, validation_data=(x, [ya, yb]), verbose=0).history

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result = {"single": run(functional, None), "mirrored": run(functional, strategy), "subclassed": run(TwoHeads, strategy)}
    with open(out, "w") as f:
        json.dump(result, f)


def _recipe(recipe_path: str, logdir: str, out: str) -> None:
    from trainkit.recipe import load_recipe
    from trainkit.run import summary_lines, train_recipe

    recipe = load_recipe(recipe_path)
    result = train_recipe(recipe, logdir=logdir, verbose=0)
    compiled = None
    if result.model_file is not None:
        import keras

        compiled = keras.models.load_model(result.model_file).compiled
    with open(out, "w") as f:
        json.dump({"history": result.history.history, "run_dir": str(result.run_dir), "chief": result.trainer.is_chief,
                   "summary": list(summary_lines(result)), "model_file_compiled": compiled}, f)


def _sequence(recipe_a: str, recipe_b: str, logdir: str, out: str) -> None:
    """Two recipes (models of other sizes) with ``distribute: mirrored`` in one process, then a
    Trainer of a third size under a second MirroredStrategy made by the caller."""
    import keras
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from trainkit import Trainer
    from trainkit.errors import TrainkitError
    from trainkit.recipe import load_recipe
    from trainkit.run import train_recipe

    results = [train_recipe(load_recipe(path), logdir=logdir, verbose=0) for path in (recipe_a, recipe_b)]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])
    trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", strategy=strategy, logdir=None,
                      diagnose=False, histograms_every=None)
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    try:
        trainer.fit(x, (x[:, :1] > 0).astype("float32"), epochs=1, batch_size=16, verbose=0)
        error = None
    except TrainkitError as err:
        error = {"code": err.code, "message": err.message}
    with open(out, "w") as f:
        json.dump({"histories": [r.history.history for r in results], "replicas": [r.trainer.strategy.num_replicas_in_sync for r in results],
                   "error": error}, f)


if __name__ == "__main__":
    if sys.argv[1] == "sequence":
        _sequence(*sys.argv[2:6])
    elif sys.argv[1] == "mirrored":
        _mirrored(sys.argv[2])
    elif sys.argv[1] == "outputs":
        _outputs(sys.argv[2])
    else:
        _recipe(sys.argv[2], sys.argv[3], sys.argv[4])
