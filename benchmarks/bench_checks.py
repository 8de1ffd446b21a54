"""Times trainkit's pre-training checks on a 50-layer model with 1e6 rows.

Prints the seconds check_compatibility (construction) and check_data (fit start) take; the target
is well under a second in total. Plain script:

    python benchmarks/bench_checks.py --rows 1000000 --layers 50
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from trainkit.checks import check_compatibility, check_data
from trainkit.resolve import get_loss


def build_model(layers: int, features: int, width: int, task: str) -> keras.Model:
    """``layers`` Dense layers: ``layers - 1`` hidden ReLU layers and the output layer."""
    hidden = [keras.layers.Dense(width, activation="relu") for _ in range(layers - 1)]
    head = keras.layers.Dense(1, activation="sigmoid") if task == "binary" else keras.layers.Dense(1)
    return keras.Sequential([keras.Input((features,)), *hidden, head])


def make_data(rows: int, features: int, task: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features), dtype=np.float32)
    score = x[:, 0] + 0.5 * x[:, 1] + 0.3 * rng.standard_normal(rows, dtype=np.float32)
    y = (score > 0).astype(np.int64) if task == "binary" else score.astype(np.float32)
    return x, y


def best_of(repeat: int, fn) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="training rows (default 1e6)")
    parser.add_argument("--val-rows", type=int, default=100_000, help="validation rows (0: none)")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--layers", type=int, default=50, help="Dense layers, output included")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--task", choices=("binary", "regression"), default="binary")
    parser.add_argument("--repeat", type=int, default=3, help="report the best of N runs")
    args = parser.parse_args(argv)

    model = build_model(args.layers, args.features, args.width, args.task)
    loss = get_loss("bce" if args.task == "binary" else "mse")
    x, y = make_data(args.rows, args.features, args.task, seed=0)
    x_val, y_val = make_data(args.val_rows, args.features, args.task, seed=1) if args.val_rows else (None, None)

    t_compat, compat = best_of(args.repeat, lambda: check_compatibility(model, loss, args.task))
    t_data, data = best_of(args.repeat, lambda: check_data(
        x, y, model=model, loss=loss, task=args.task, x_val=x_val, y_val=y_val))

    print(f"model: {len(model.layers)} layers; data: {args.rows} x {args.features} float32"
          f" (+{args.val_rows} validation rows), task {args.task}; best of {args.repeat}")
    print(f"check_compatibility: {t_compat:.4f} s  findings={[f.code for f in compat]}")
    print(f"check_data:          {t_data:.4f} s  findings={[f.code for f in data]}")
    print(f"total:               {t_compat + t_data:.4f} s")


if __name__ == "__main__":
    main()
