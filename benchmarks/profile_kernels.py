"""Where the statistics' time goes: per-kernel CPU time of one epoch, statistics on against off.

Trains one of ``bench_fit.py``'s models twice (statistics off, then on; no TensorBoard, so only the
compiled step differs), profiles one epoch of each with TensorFlow's profiler, and prints the
kernels by the CPU time the statistics add. Under XLA every fused kernel is traced
(``--xla_cpu_enable_xprof_traceme``, set here before TensorFlow starts); without XLA (the CNN) the
TensorFlow ops are. Kernels are grouped by kind unless ``--each`` is given: XLA's lose their number
(``multiply_dot_fusion.55`` counts as ``multiply_dot_fusion``), TensorFlow ops go by op type. Tracing adds ~1 us a kernel, so the epoch
is slower than untraced: compare the two columns, not absolute times.

    python benchmarks/profile_kernels.py --model deep
    python benchmarks/profile_kernels.py --model mlp --top 20 --each

To see what a kernel computes, dump XLA's optimised HLO as well
(``XLA_FLAGS=--xla_dump_to=DIR --xla_dump_hlo_as_text``) and look the name up in
``DIR/*cpu_after_optimizations.txt``.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_fit  # imports TensorFlow quietly, after XLA_FLAGS is set
import keras
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

from trainkit import Trainer
from trainkit.jit_policy import choose_jit_compile

MODELS = {  # bench_fit's models and data; each takes --scale
    "mlp": lambda scale: (bench_fit.mlp(), bench_fit.binary_data(bench_fit.scaled(10_000, scale)), "binary_crossentropy", "binary"),
    "deep": lambda scale: (bench_fit.mlp(256, (256,) * 8), bench_fit.binary_data(bench_fit.scaled(5_000, scale), features=256),
                           "binary_crossentropy", "binary"),
    "cnn": lambda scale: (bench_fit.cnn, bench_fit.image_data(bench_fit.scaled(2_000, scale)), "sparse_categorical_crossentropy", "multiclass"),
}
# Events that time whole calls or the executor around the kernels, not kernels themselves.
_ENCLOSING = re.compile(r"ThunkExecutor|ExecuteAsyncOnStream|BlockUntilReady|EagerExecute|EagerKernelExecute|"
                        r"EagerLocalExecute|TFE_Py|__inference_|^run$|ExecutorState|ExecutorDoneCallback|end: ")


def kind(name: str) -> str:
    """An XLA kernel's name without its number; a TensorFlow op's type (``.../Relu:_MklNativeFusedConv2D``)."""
    return name.rsplit(":", 1)[1] if ":" in name else re.sub(r"\.\d+$", "", name)


def kernel_times(logdir: str, each: bool) -> collections.Counter[str]:
    """CPU milliseconds per kernel name over every worker thread of the profile in ``logdir``."""
    (path,) = Path(logdir).rglob("*.xplane.pb")
    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    times: collections.Counter[str] = collections.Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            if line.name == "python":  # the training thread waits in the call; kernels run elsewhere
                continue
            for event in line.events:
                name = names.get(event.metadata_id, "?")
                if _ENCLOSING.search(name):
                    continue
                times[name if each else kind(name)] += event.duration_ps / 1e9
    return times


def profile_epoch(model: str, statistics: bool, each: bool, scale: float = 1.0) -> collections.Counter[str]:
    build, (x, y), loss, task = MODELS[model](scale)
    keras.utils.set_random_seed(0)
    net = build()  # with the path jit_compile="auto" takes for a long run
    trainer = Trainer(net, loss=loss, optimizer="adam", task=task, seed=0, statistics=statistics, jit_compile=choose_jit_compile(net))
    trainer.fit(x, y, batch_size=32, epochs=1, verbose=0)  # traces and compiles
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            trainer.fit(x, y, batch_size=32, epochs=1, verbose=0)
        finally:
            tf.profiler.experimental.stop()
        return kernel_times(logdir, each)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="deep")
    parser.add_argument("--top", type=int, default=25, help="kernels to print")
    parser.add_argument("--each", action="store_true", help="one line per kernel instead of per kind")
    parser.add_argument("--scale", type=float, default=1.0, help="the model's rows times this (a quick check that it runs: 0.02)")
    args = parser.parse_args(argv)
    off = profile_epoch(args.model, False, args.each, args.scale)
    on = profile_epoch(args.model, True, args.each, args.scale)
    print(f"{args.model}: kernel CPU time of one traced epoch, statistics off {sum(off.values()):.1f} ms, "
          f"on {sum(on.values()):.1f} ms")
    print(f"{'off ms':>9} {'on ms':>9} {'added':>9}  kernel")
    for name in sorted(set(on) | set(off), key=lambda n: off[n] - on[n])[: args.top]:
        print(f"{off[name]:9.2f} {on[name]:9.2f} {on[name] - off[name]:+9.2f}  {name}")


if __name__ == "__main__":
    main()
