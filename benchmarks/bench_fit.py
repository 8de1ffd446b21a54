"""trainkit against ``model.fit``, in one process, same data, model and seeds.

For each model it times ``model.fit`` with steps_per_execution 1 and 32, trainkit with statistics
off, and trainkit with full per-step statistics written to TensorBoard, and prints samples/s, the
ratio to the faster ``model.fit`` setting, and the growth of peak RSS during each setting. Timing
excludes the first (compiling) epoch of every setting. A scaling table follows: samples/s as the
rows grow and as the MLP widens.

    python benchmarks/bench_fit.py                 # everything (a few minutes on 2 cores)
    python benchmarks/bench_fit.py --models mlp --no-scaling --json out.json

Ratios, not absolute numbers, are the result: the machines are shared and noisy, so only numbers
taken in the same run are compared.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainkit.quiet import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from trainkit import Trainer  # noqa: E402

Builder = Callable[[], keras.Model]


def mlp(features: int = 10, widths: tuple[int, ...] = (64, 32)) -> Builder:
    def build() -> keras.Model:
        layers = [keras.Input((features,))] + [keras.layers.Dense(w, activation="relu") for w in widths]
        return keras.Sequential([*layers, keras.layers.Dense(1, activation="sigmoid")])

    return build


def cnn() -> keras.Model:
    return keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])


def binary_data(rows: int, features: int = 10) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features)).astype("float32")
    return x, (x[:, :1] + x[:, 1:2] > 0).astype("float32")


def image_data(rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((rows, 32, 32, 3), dtype=np.float32), rng.integers(0, 10, rows).astype("int32")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def timed(fn: Callable[[int], None], epochs: int) -> float:
    fn(1)  # compile and warm up
    began = time.perf_counter()
    fn(epochs)
    return time.perf_counter() - began


def keras_fit(build: Builder, x: np.ndarray, y: np.ndarray, loss: str, batch: int, spe: int, epochs: int) -> float:
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(optimizer="adam", loss=loss, steps_per_execution=spe)
    return timed(lambda e: model.fit(x, y, batch_size=batch, epochs=e, verbose=0, shuffle=True), epochs)


def trainkit_fit(build: Builder, x: np.ndarray, y: np.ndarray, loss: str, task: str, batch: int, epochs: int, statistics: bool) -> float:
    keras.utils.set_random_seed(0)
    options: dict[str, object] = {}
    if "statistics" in inspect.signature(Trainer).parameters:
        options["statistics"] = statistics
    with tempfile.TemporaryDirectory() as logdir:
        trainer = Trainer(build(), loss=loss, optimizer="adam", task=task, seed=0, logdir=logdir if statistics else None, **options)  # type: ignore[arg-type]
        return timed(lambda e: trainer.fit(x, y, batch_size=batch, epochs=e, verbose=0), epochs)


def compare(name: str, build: Builder, x: np.ndarray, y: np.ndarray, loss: str, task: str, batch: int, epochs: int) -> dict[str, object]:
    rows = len(x) * epochs
    results: dict[str, dict[str, float]] = {}
    settings: list[tuple[str, Callable[[], float]]] = [
        ("model.fit spe=1", lambda: keras_fit(build, x, y, loss, batch, 1, epochs)),
        ("model.fit spe=32", lambda: keras_fit(build, x, y, loss, batch, 32, epochs)),
        ("trainkit stats off", lambda: trainkit_fit(build, x, y, loss, task, batch, epochs, False)),
        ("trainkit stats on + TensorBoard", lambda: trainkit_fit(build, x, y, loss, task, batch, epochs, True)),
    ]
    for label, run in settings:
        before = rss_mb()
        seconds = run()
        results[label] = {"samples_per_s": rows / seconds, "peak_rss_growth_mb": rss_mb() - before}
    fastest_fit = max(results["model.fit spe=1"]["samples_per_s"], results["model.fit spe=32"]["samples_per_s"])
    for entry in results.values():
        entry["ratio_to_fit"] = entry["samples_per_s"] / fastest_fit
    stats_cost = results["trainkit stats off"]["samples_per_s"] / results["trainkit stats on + TensorBoard"]["samples_per_s"]
    print(f"\n{name}  ({len(x)} rows, batch {batch}, {epochs} timed epochs)")
    for label, entry in results.items():
        print(f"  {label:<34} {entry['samples_per_s']:>11,.0f} samples/s   x{entry['ratio_to_fit']:.2f} vs fastest model.fit   +{entry['peak_rss_growth_mb']:.0f} MB peak RSS")
    print(f"  statistics on vs off: {stats_cost:.2f}x slower")
    return {"model": name, "settings": results, "stats_on_vs_off_slowdown": stats_cost}


def scaling(epochs: int) -> list[dict[str, object]]:
    rows_out: list[dict[str, object]] = []
    print("\nscaling (trainkit, statistics on; model.fit spe=32 for reference)")
    for rows in (1_000, 10_000, 100_000):
        x, y = binary_data(rows)
        tk = rows * epochs / trainkit_fit(mlp(), x, y, "binary_crossentropy", "binary", 32, epochs, True)
        kf = rows * epochs / keras_fit(mlp(), x, y, "binary_crossentropy", 32, 32, epochs)
        rows_out.append({"rows": rows, "width": 64, "trainkit": tk, "model_fit": kf})
        print(f"  rows {rows:>7}  width   64   trainkit {tk:>10,.0f}/s   model.fit {kf:>10,.0f}/s   x{tk / kf:.2f}")
    x, y = binary_data(10_000)
    for width in (64, 256, 1024):
        build = mlp(widths=(width, width // 2))
        tk = 10_000 * epochs / trainkit_fit(build, x, y, "binary_crossentropy", "binary", 32, epochs, True)
        kf = 10_000 * epochs / keras_fit(build, x, y, "binary_crossentropy", 32, 32, epochs)
        rows_out.append({"rows": 10_000, "width": width, "trainkit": tk, "model_fit": kf})
        print(f"  rows  10,000  width {width:>4}   trainkit {tk:>10,.0f}/s   model.fit {kf:>10,.0f}/s   x{tk / kf:.2f}")
    return rows_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn", "deep"], choices=["mlp", "cnn", "deep"])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per setting")
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    results: dict[str, object] = {"machine": {"cpus": os.cpu_count()}, "models": []}
    if "mlp" in args.models:
        x, y = binary_data(10_000)
        results["models"].append(compare("MLP 10-64-32-1", mlp(), x, y, "binary_crossentropy", "binary", 32, args.epochs))  # type: ignore[union-attr]
    if "cnn" in args.models:
        x, y = image_data(2_000)
        results["models"].append(compare("CNN Conv2D(32) 32x32x3 -> 10", cnn, x, y, "sparse_categorical_crossentropy", "multiclass", 32, args.epochs))  # type: ignore[union-attr]
    if "deep" in args.models:
        x, y = binary_data(5_000, features=256)
        results["models"].append(compare("deep MLP 8x256", mlp(256, (256,) * 8), x, y, "binary_crossentropy", "binary", 32, args.epochs))  # type: ignore[union-attr]
    if not args.no_scaling:
        results["scaling"] = scaling(args.epochs)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
