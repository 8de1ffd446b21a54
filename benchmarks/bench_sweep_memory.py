"""Memory of a sweep in one process: resident memory after each of N short trainings.

Each mode runs in a process of its own (``--mode``; without it, every mode in turn, each in a
subprocess) and trains N small MLPs one after the other, as ``trainkit compare`` trains the
variants of a sweep, measuring VmRSS after each (after ``gc.collect()``). The growth a trial is
the slope of a least-squares line through the trials after the first few (warm-up: XLA's and
TensorFlow's own one-off start-up).

Modes:
    trainer-xla / trainer-plain: ``Trainer(jit_compile=True/False)``, statistics on, a logdir
        (TensorBoard events, histograms, diagnosis), 2 epochs of 512 rows.
    compare-xla / compare-plain: ``iter_compare`` over a recipe's sweep of N learning rates
        (the CLI's code path: prepare every variant, then train each, writing its run directory).
    keras-fit: ``model.compile(jit_compile=True)`` (what Keras's ``"auto"`` picks here) +
        ``model.fit`` of the same model, for reference.

Usage:
    python benchmarks/bench_sweep_memory.py [--trials 24] [--mode trainer-xla] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODES = ("trainer-xla", "trainer-plain", "compare-xla", "compare-plain", "keras-fit")
WARMUP = 4


def rss_mb() -> float:
    """This process's resident memory (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS")


def slope(values: list[float]) -> float:
    """Least-squares MB a trial over ``values`` (one per trial)."""
    n = len(values)
    if n < 2:
        return float("nan")
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    num = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    return num / sum((i - mean_x) ** 2 for i in range(n))


def _data():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 10)).astype("float32")
    y = (x[:, :3].sum(axis=1) > 0).astype("float32")[:, None]
    return x, y


def _model():
    import keras

    return keras.Sequential([keras.Input((10,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1, activation="sigmoid")])


def run_trainer(trials: int, jit: bool, logdir: Path) -> list[float]:
    from trainkit import Trainer

    x, y = _data()
    rss = []
    for i in range(trials):
        trainer = Trainer(_model(), loss="binary_crossentropy", optimizer="adam", task="binary", metrics=["accuracy"], seed=i,
                          jit_compile=jit, logdir=logdir / f"t{i}", checkpoint_every=0)
        trainer.fit(x, y, epochs=2, batch_size=32, validation_split=0.2, verbose=0)
        del trainer
        gc.collect()
        rss.append(rss_mb())
    return rss


def run_compare(trials: int, jit: bool, logdir: Path) -> list[float]:
    from trainkit.compare import expand_all, iter_compare
    from trainkit.recipe import Recipe

    recipe = Recipe.from_dict({
        "name": "mem", "task": "binary",
        "data": {"source": "generator", "generator": "learnable_binary", "rows": 512, "features": 10, "seed": 0},
        "model": {"layers": [{"type": "dense", "units": 32, "activation": "relu"}, {"type": "dense", "units": 1, "activation": "sigmoid"}]},
        "loss": "binary_crossentropy", "optimizer": "adam", "metrics": ["accuracy"],
        "training": {"epochs": 2, "batch_size": 32, "validation_split": 0.2, "seed": 0, "jit_compile": jit, "checkpoint_every": 0},
        "sweep": {"optimizer.learning_rate": [1e-3 * (1 + i / 100) for i in range(trials)]},
    })
    rss = []
    for _row in iter_compare(expand_all([recipe]), logdir=logdir):
        gc.collect()
        rss.append(rss_mb())
    return rss


def run_keras_fit(trials: int) -> list[float]:
    x, y = _data()
    rss = []
    for _ in range(trials):
        model = _model()
        model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"], jit_compile=True)
        model.fit(x, y, epochs=2, batch_size=32, validation_split=0.2, verbose=0)
        del model
        gc.collect()
        rss.append(rss_mb())
    return rss


def run_mode(mode: str, trials: int) -> dict:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if mode.startswith("trainer-"):
            rss = run_trainer(trials, mode == "trainer-xla", Path(tmp))
        elif mode.startswith("compare-"):
            rss = run_compare(trials, mode == "compare-xla", Path(tmp))
        else:
            rss = run_keras_fit(trials)
    return {"mode": mode, "trials": trials, "rss_mb": [round(r, 1) for r in rss], "mb_per_trial": round(slope(rss[WARMUP:]), 2),
            "seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--mode", choices=MODES, action="append")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    modes = args.mode or list(MODES)
    results = []
    if len(modes) == 1:
        results.append(run_mode(modes[0], args.trials))
    else:
        for mode in modes:  # a fresh process each: one mode's growth must not hide another's
            out = subprocess.run([sys.executable, __file__, "--mode", mode, "--trials", str(args.trials)], check=True, capture_output=True, text=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"{mode:14s} {results[-1]['mb_per_trial']:7.2f} MB/trial  ({results[-1]['seconds']} s)", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if len(modes) == 1:
        print(json.dumps(results[0]))


if __name__ == "__main__":
    main()
