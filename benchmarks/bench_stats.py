"""Times trainkit with per-step statistics on and off, for the same models in one run.

For each model it trains one Trainer with ``statistics=True`` and one with ``statistics=False``
(same architecture, same data, same compile settings), runs a warm-up epoch for each (tracing and
compiling), then times ``--epochs`` epochs of each, alternating, ``--repeat`` times, and reports
the best samples/s of each and the slowdown ratio (on / off time). Time is summed from each epoch's
begin to its end (every compiled call and the host work between them), leaving out the per-fit
set-up, which does not depend on the statistics. The live diagnosis is turned off in both. The
ratio of process CPU time is printed too: on a shared machine it moves less than wall time. With ``--logdir`` both also
write TensorBoard events (per-step scalars every step, histograms once per epoch), and the time is
that of the whole fit, which returns once the writer thread has written every event. Plain script:

    python benchmarks/bench_stats.py                     # 10-64-32-1 MLP and a small CNN
    python benchmarks/bench_stats.py --models mlp --json stats.json

Targets (issue 9): ratio <= 1.3 for the MLP, <= 1.1 for the CNN and the deeper MLP.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from trainkit import Callback, Trainer
from trainkit.jit_policy import choose_jit_compile


class EpochTimer(Callback):
    """Sums the wall and process CPU time of every epoch (without fit's set-up and checks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self._began = (0.0, 0.0)

    def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
        self._began = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch: int, logs: object) -> None:
        self.seconds += time.perf_counter() - self._began[0]
        self.cpu_seconds += time.process_time() - self._began[1]


def mlp(features: int = 10) -> keras.Model:
    """The 10-64-32-1 MLP of the issue."""
    return keras.Sequential([
        keras.Input((features,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid"),
    ])


def deep_mlp(features: int = 10) -> keras.Model:
    """A deeper, wider MLP: 10-256-256-256-256-1."""
    hidden = [keras.layers.Dense(256, activation="relu") for _ in range(4)]
    return keras.Sequential([keras.Input((features,)), *hidden, keras.layers.Dense(1, activation="sigmoid")])


def cnn() -> keras.Model:
    """A small CNN on 28x28x1 inputs: two conv blocks and a dense head."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(1, activation="sigmoid"),
    ])


def tabular(rows: int, features: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, features), dtype=np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)[:, None]
    return x, y


def images(rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 28, 28, 1), dtype=np.float32)
    y = (x[:, :14].mean(axis=(1, 2, 3)) > 0).astype(np.float32)[:, None]
    return x, y


MODELS: dict[str, tuple[Callable[[], keras.Model], Callable[[int], tuple[np.ndarray, np.ndarray]]]] = {
    "mlp": (mlp, tabular),
    "deep_mlp": (deep_mlp, tabular),
    "cnn": (cnn, images),
}


def bench(name: str, rows: int, batch_size: int, epochs: int, repeat: int, logdir: Path | None) -> dict[str, float | str | int]:
    """Best samples/s with statistics on and off for one model, and their ratio."""
    build, data = MODELS[name]
    x, y = data(rows)
    # The live diagnosis (when this trainkit has it) is a consumer of the statistics with its own
    # cost; it is left out so the ratio measures the statistics themselves.
    extra = {"diagnose": False} if "diagnose" in inspect.signature(Trainer).parameters else {}
    trainers = {}
    for statistics in (True, False):
        keras.utils.set_random_seed(0)
        run_dir = logdir / f"{name}-{'on' if statistics else 'off'}" if logdir else None
        model = build()  # with the path jit_compile="auto" takes for a long run
        trainer = Trainer(model, loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, jit_compile=choose_jit_compile(model),
                          statistics=statistics, logdir=run_dir, step_table_steps=0, **extra)
        trainer.fit(x, y, epochs=1, batch_size=batch_size, verbose=0)  # trace and compile
        trainers[statistics] = trainer
    best = {True: float("inf"), False: float("inf")}
    cpu = {True: float("inf"), False: float("inf")}
    for _ in range(repeat):
        for statistics, trainer in trainers.items():  # alternate, so drift hits both alike
            timer = EpochTimer()
            began = (time.perf_counter(), time.process_time())
            trainer.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, callbacks=[timer])
            if logdir is not None:  # the whole fit: it ends when the writer has written everything
                timer.seconds, timer.cpu_seconds = time.perf_counter() - began[0], time.process_time() - began[1]
            best[statistics] = min(best[statistics], timer.seconds)
            cpu[statistics] = min(cpu[statistics], timer.cpu_seconds)
    names = trainers[True]._train_loop.names if trainers[True]._train_loop else ()
    samples = rows * epochs
    return {
        "model": name,
        "rows": rows,
        "batch_size": batch_size,
        "jit_compile": bool(trainers[True]._train_loop.jit_compile) if trainers[True]._train_loop else False,
        "statistics_per_step": len(names) - 1,
        "samples_per_s_on": samples / best[True],
        "samples_per_s_off": samples / best[False],
        "ratio": best[True] / best[False],
        "cpu_ratio": cpu[True] / cpu[False],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=["mlp", "cnn"])
    parser.add_argument("--rows", type=int, default=10_000, help="rows for the MLPs (default 10k)")
    parser.add_argument("--cnn-rows", type=int, default=2_048, help="rows for the CNN (default 2048)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed fit")
    parser.add_argument("--repeat", type=int, default=3, help="report the best of N timed fits")
    parser.add_argument("--logdir", action="store_true", help="also write TensorBoard events (to a temp dir)")
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow intra/inter-op threads (0: its default)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    args = parser.parse_args(argv)
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    tmp = Path(tempfile.mkdtemp(prefix="trainkit-bench-")) if args.logdir else None
    results = []
    try:
        for name in args.models:
            rows = args.cnn_rows if name == "cnn" else args.rows
            result = bench(name, rows, args.batch_size, args.epochs, args.repeat, tmp)
            results.append(result)
            print(f"{name:9s} rows={rows} batch={args.batch_size} xla={result['jit_compile']!s:5s} "
                  f"stats/step={result['statistics_per_step']:3d}  "
                  f"on {result['samples_per_s_on']:10.0f} samples/s  off {result['samples_per_s_off']:10.0f} samples/s  "
                  f"ratio {result['ratio']:.3f}x  (CPU time ratio {result['cpu_ratio']:.3f}x)", flush=True)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"logdir": args.logdir, "results": results}, indent=2))


if __name__ == "__main__":
    main()
