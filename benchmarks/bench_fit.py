"""trainkit against ``model.fit``, in one process, same data, model and seeds.

For each model it times ``model.fit`` with steps_per_execution 1 and 32, trainkit with statistics
off, and trainkit with full per-step statistics written to TensorBoard, and prints samples/s, the
ratio to the faster ``model.fit`` setting, and the growth of peak RSS during each setting. Every
setting first fits one (compiling) epoch; then each runs ``--repeat`` timed fits of ``--epochs``
epochs, interleaved round by round, and its best time counts. Two times are kept: the epochs
(from each epoch's begin to its end, through callbacks: the training throughput, which the ratios
use) and the whole ``fit()`` call, which adds each framework's per-call set-up and tear-down (for
trainkit: data checks, opening and flushing TensorBoard, the final checkpoint), shown as ms a call.
``mlp-stream`` trains the MLP from the same ``tf.data.Dataset`` (``from_tensor_slices((x, y))
.batch(32)``) in every setting: the streaming path. A scaling table follows: samples/s as the
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
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainkit.quiet import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from trainkit import Callback, Trainer  # noqa: E402
from trainkit.jit_policy import choose_jit_compile  # noqa: E402

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


class EpochClock:
    """Sums the wall time from each epoch's begin to its end (for Keras and trainkit callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began = 0.0

    def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
        self._began = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: object = None) -> None:
        self.seconds += time.perf_counter() - self._began


class KerasEpochClock(EpochClock, keras.callbacks.Callback):
    def __init__(self) -> None:
        keras.callbacks.Callback.__init__(self)
        EpochClock.__init__(self)


class TrainkitEpochClock(EpochClock, Callback):
    pass


Run = Callable[[int, EpochClock | None], None]  # fit for this many epochs, timing its epochs


def fit_data(x: np.ndarray, y: np.ndarray, batch: int, stream: bool) -> tuple[tuple[object, ...], dict[str, object]]:
    """The data arguments of ``fit``: numpy arrays with a batch size, or one batched dataset."""
    if stream:  # the pipeline's own order (model.fit warns that it ignores shuffle=True for a dataset)
        return (tf.data.Dataset.from_tensor_slices((x, y)).batch(batch),), {"shuffle": False}
    return (x, y), {"batch_size": batch, "shuffle": True}


def keras_setting(build: Builder, x: np.ndarray, y: np.ndarray, loss: str, batch: int, spe: int, stream: bool = False) -> tuple[Run, type[EpochClock]]:
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(optimizer="adam", loss=loss, steps_per_execution=spe)
    args, kwargs = fit_data(x, y, batch, stream)

    def run(epochs: int, clock: EpochClock | None) -> None:
        model.fit(*args, **kwargs, epochs=epochs, verbose=0, callbacks=[clock] if clock else [])

    return run, KerasEpochClock


def trainkit_setting(build: Builder, x: np.ndarray, y: np.ndarray, loss: str, task: str, batch: int, statistics: bool, logdir: str,
                     stream: bool = False) -> tuple[Run, type[EpochClock]]:
    keras.utils.set_random_seed(0)
    options: dict[str, object] = {}
    if "statistics" in inspect.signature(Trainer).parameters:
        options["statistics"] = statistics
    model = build()
    # What jit_compile="auto" picks for a run long enough to repay XLA's compile time: the timed
    # fits here are short, but they measure the steady state (the compile is left out).
    options["jit_compile"] = choose_jit_compile(model)
    trainer = Trainer(model, loss=loss, optimizer="adam", task=task, seed=0, logdir=logdir if statistics else None, **options)  # type: ignore[arg-type]
    args, kwargs = fit_data(x, y, batch, stream)

    def run(epochs: int, clock: EpochClock | None) -> None:
        trainer.fit(*args, **kwargs, epochs=epochs, verbose=0, callbacks=[clock] if clock else [])

    return run, TrainkitEpochClock


def best_times(runs: dict[str, tuple[Run, type[EpochClock]]], epochs: int, repeat: int) -> dict[str, dict[str, float]]:
    """Best times of ``repeat`` timed fits of each setting, and its peak RSS growth.

    Every setting first fits one epoch (tracing and compiling), then the timed fits run in
    rounds, one fit of each setting per round, so drift in the machine's load hits all alike;
    the best time is the one least disturbed by other work on a shared machine. Returns per
    setting ``epochs_s`` (the epochs alone: the training throughput), ``fit_s`` (the whole
    ``fit()`` call) and ``rss_mb``.
    """
    out: dict[str, dict[str, float]] = {}
    for label, (run, _) in runs.items():
        before = rss_mb()
        run(1, None)
        out[label] = {"epochs_s": float("inf"), "fit_s": float("inf"), "rss_mb": rss_mb() - before}
    for _ in range(repeat):
        for label, (run, clock_type) in runs.items():
            clock = clock_type()
            began = time.perf_counter()
            run(epochs, clock)
            out[label]["fit_s"] = min(out[label]["fit_s"], time.perf_counter() - began)
            out[label]["epochs_s"] = min(out[label]["epochs_s"], clock.seconds)
    return out


def compare(name: str, build: Builder, x: np.ndarray, y: np.ndarray, loss: str, task: str, batch: int, epochs: int, repeat: int,
            stream: bool = False) -> dict[str, object]:
    samples = len(x) * epochs
    with tempfile.TemporaryDirectory() as logdir:
        runs = {
            "model.fit spe=1": keras_setting(build, x, y, loss, batch, 1, stream),
            "model.fit spe=32": keras_setting(build, x, y, loss, batch, 32, stream),
            "trainkit stats off": trainkit_setting(build, x, y, loss, task, batch, False, logdir, stream),
            "trainkit stats on + TensorBoard": trainkit_setting(build, x, y, loss, task, batch, True, logdir, stream),
        }
        times = best_times(runs, epochs, repeat)
    results = {
        label: {
            "samples_per_s": samples / t["epochs_s"],
            "fit_samples_per_s": samples / t["fit_s"],
            "fit_overhead_ms": 1000 * (t["fit_s"] - t["epochs_s"]),
            "peak_rss_growth_mb": t["rss_mb"],
        }
        for label, t in times.items()
    }
    fastest_fit = max(results["model.fit spe=1"]["samples_per_s"], results["model.fit spe=32"]["samples_per_s"])
    fastest_whole = max(results["model.fit spe=1"]["fit_samples_per_s"], results["model.fit spe=32"]["fit_samples_per_s"])
    for entry in results.values():
        entry["ratio_to_fit"] = entry["samples_per_s"] / fastest_fit
        entry["fit_ratio_to_fit"] = entry["fit_samples_per_s"] / fastest_whole
    on, off = results["trainkit stats on + TensorBoard"], results["trainkit stats off"]
    stats_cost = off["samples_per_s"] / on["samples_per_s"]
    print(f"\n{name}  ({len(x)} rows, batch {batch}, best of {repeat} fits of {epochs} epochs)")
    print(f"  {'':34} {'training (epochs)':>30}   {'whole fit() call':>32}")
    for label, entry in results.items():
        print(f"  {label:<34} {entry['samples_per_s']:>11,.0f} samples/s  x{entry['ratio_to_fit']:5.2f}   "
              f"{entry['fit_samples_per_s']:>11,.0f} samples/s  x{entry['fit_ratio_to_fit']:5.2f}  "
              f"(+{entry['fit_overhead_ms']:.0f} ms a call)   +{entry['peak_rss_growth_mb']:.0f} MB peak RSS")
    print(f"  statistics on vs off: {stats_cost:.2f}x slower training, "
          f"{off['fit_samples_per_s'] / on['fit_samples_per_s']:.2f}x slower whole fit() calls", flush=True)
    return {"model": name, "settings": results, "stats_on_vs_off_slowdown": stats_cost,
            "stats_on_vs_off_fit_slowdown": off["fit_samples_per_s"] / on["fit_samples_per_s"]}


def scaled(rows: int, scale: float) -> int:
    """``rows`` times ``scale`` (``--scale``), at least two batches."""
    return max(64, round(rows * scale))


def scaling(epochs: int, repeat: int, scale: float = 1.0) -> list[dict[str, object]]:
    rows_out: list[dict[str, object]] = []
    print("\nscaling (trainkit, statistics on + TensorBoard; model.fit spe=32 for reference)")
    cases = [(rows, 64) for rows in (1_000, 10_000, 100_000)] + [(10_000, width) for width in (256, 1024)]
    for rows, width in cases:
        rows = scaled(rows, scale)
        x, y = binary_data(rows)
        build = mlp(widths=(width, width // 2))
        with tempfile.TemporaryDirectory() as logdir:
            runs = {
                "trainkit": trainkit_setting(build, x, y, "binary_crossentropy", "binary", 32, True, logdir),
                "model_fit": keras_setting(build, x, y, "binary_crossentropy", 32, 32),
            }
            times = best_times(runs, epochs, repeat)
        tk, kf = rows * epochs / times["trainkit"]["epochs_s"], rows * epochs / times["model_fit"]["epochs_s"]
        rows_out.append({"rows": rows, "width": width, "trainkit": tk, "model_fit": kf})
        print(f"  rows {rows:>7,}  width {width:>4}   trainkit {tk:>10,.0f}/s   model.fit {kf:>10,.0f}/s   x{tk / kf:.2f}", flush=True)
    return rows_out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn", "deep", "mlp-stream"], choices=["mlp", "cnn", "deep", "mlp-stream"])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed fit")
    parser.add_argument("--repeat", type=int, default=3, help="timed fits per setting; the best counts")
    parser.add_argument("--no-scaling", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--scale", type=float, default=1.0, help="every model's rows times this (a quick check that it runs: 0.02)")
    args = parser.parse_args(argv)

    results: dict[str, object] = {"machine": {"cpus": os.cpu_count()}, "scale": args.scale, "models": []}
    if "mlp" in args.models:
        x, y = binary_data(scaled(10_000, args.scale))
        results["models"].append(compare("MLP 10-64-32-1", mlp(), x, y, "binary_crossentropy", "binary", 32, args.epochs, args.repeat))  # type: ignore[union-attr]
    if "cnn" in args.models:
        x, y = image_data(scaled(2_000, args.scale))
        results["models"].append(compare("CNN Conv2D(32) 32x32x3 -> 10", cnn, x, y, "sparse_categorical_crossentropy", "multiclass", 32, args.epochs, args.repeat))  # type: ignore[union-attr]
    if "deep" in args.models:
        x, y = binary_data(scaled(5_000, args.scale), features=256)
        results["models"].append(compare("deep MLP 8x256", mlp(256, (256,) * 8), x, y, "binary_crossentropy", "binary", 32, args.epochs, args.repeat))  # type: ignore[union-attr]
    if "mlp-stream" in args.models:
        x, y = binary_data(scaled(10_000, args.scale))
        results["models"].append(compare("MLP 10-64-32-1 from a tf.data.Dataset", mlp(), x, y, "binary_crossentropy", "binary", 32, args.epochs,  # type: ignore[union-attr]
                                         args.repeat, stream=True))
    if not args.no_scaling:
        results["scaling"] = scaling(args.epochs, args.repeat, args.scale)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
