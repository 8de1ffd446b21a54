"""How many kernels one XLA training step runs, with statistics off and on.

The small MLP is bound by per-kernel overhead (RESULTS.md), so the number of kernels XLA's CPU
backend makes of one step is a measure of what the statistics cost that, unlike a timing, does not
move with the machine's load. Each mode trains the model for one epoch in a fresh process with
XLA's optimised HLO dumped (``--xla_dump_to``), and the kernels of the training loop's body are
counted: its fusions, dots, copies, concatenations and conditionals (parameters, tuples, bitcasts
and constants are no kernels). ``--list`` prints the kernels of the step with statistics that
come from neither the model, the loss, its gradients nor the optimizer (the statistics' and the
loop's own), with the TensorFlow op each comes from.

    python benchmarks/count_kernels.py --model mlp
    python benchmarks/count_kernels.py --model deep --list

The counts depend on the TensorFlow/XLA version, not on the machine: compare commits on one
install.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

_NOT_KERNELS = {"parameter", "get-tuple-element", "tuple", "bitcast", "constant"}
_INSTRUCTION = re.compile(r"\s*(?:ROOT )?%?(\S+) = (\([^()]*\)|\S+) ([\w-]+)\(")  # a tuple shape has no parentheses inside


def train_once(model: str, statistics: bool) -> None:
    """Trains ``model`` for one epoch (run in a child process with ``XLA_FLAGS`` set)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import bench_fit

    from trainkit import Trainer

    if model == "deep":
        build, (x, y) = bench_fit.mlp(256, (256,) * 8), bench_fit.binary_data(640, features=256)
    else:
        build, (x, y) = bench_fit.mlp(), bench_fit.binary_data(640)
    trainer = Trainer(build(), loss="binary_crossentropy", optimizer="adam", task="binary", seed=0, jit_compile=True,
                      statistics=statistics, diagnose=False)
    trainer.fit(x, y, batch_size=32, epochs=1, verbose=0)


def loop_body_kernels(dump_dir: Path) -> list[tuple[str, str, str]]:
    """``(kernel, op, TensorFlow op name)`` of the largest while-loop body in the dumped programs."""
    best: list[tuple[str, str, str]] = []
    for path in dump_dir.glob("*after_optimizations.txt"):
        text = path.read_text()
        for body in re.findall(r"while\([^)]*\), condition=%?\S+?, body=%?([\w.\-]+)", text):
            block = re.search(rf"^%?{re.escape(body)} [^\n]*\{{\n(.*?)\n\}}", text, re.S | re.M)
            if block is None:
                continue
            kernels = []
            for line in block.group(1).split("\n"):
                match = _INSTRUCTION.match(line)
                if match and match.group(3) not in _NOT_KERNELS:
                    op_name = re.search(r'op_name="([^"]+)"', line)
                    kernels.append((match.group(1), match.group(3), op_name.group(1) if op_name else ""))
            if len(kernels) > len(best):
                best = kernels
    return best


def count(model: str, statistics: bool) -> list[tuple[str, str, str]]:
    """Runs :func:`train_once` in a child process dumping XLA's HLO; the loop body's kernels."""
    with tempfile.TemporaryDirectory() as dump:
        env = {**os.environ, "XLA_FLAGS": f"--xla_dump_to={dump} --xla_dump_hlo_as_text --xla_dump_hlo_pass_re=^$", "TF_CPP_MIN_LOG_LEVEL": "2"}
        code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import count_kernels; count_kernels.train_once({model!r}, {statistics})"
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        return loop_body_kernels(Path(dump))


#: TensorFlow name scopes of the model (and its probe), the loss, its gradients and the optimizer.
_STEP_SCOPES = ("sequential", "gradient_tape/", "binary_crossentropy", "adam/")


def is_loop_or_statistics_kernel(op_name: str) -> bool:
    """Whether a kernel comes from an op outside :data:`_STEP_SCOPES`: the statistics' or the loop's."""
    return bool(op_name) and not any(scope in op_name for scope in _STEP_SCOPES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=("mlp", "deep"), default="mlp")
    parser.add_argument("--list", action="store_true", help="print the kernels the statistics add")
    args = parser.parse_args()
    off, on = count(args.model, False), count(args.model, True)
    print(f"{args.model}: kernels a step, statistics off {len(off)}, on {len(on)} (+{len(on) - len(off)})")
    if args.list:
        print("kernels with statistics outside the model, the loss, its gradients and the optimizer:")
        for kernel, op, op_name in on:
            if is_loop_or_statistics_kernel(op_name):
                print(f"  {kernel:40s} {op:12s} {op_name}")


if __name__ == "__main__":
    main()
