"""The diagnosis's recall and false alarms on every scenario recipe, at several seeds.

Trains each recipe of ``tests/test_scenarios.py``'s tables at its full length (no epoch
overrides; without XLA, as the tests train them) with the data and training seeds given, then
counts the expected codes each broken recipe got (a finding of any severity) and the clean
recipes that got a warning or an error. The README's "Scenario recipes" section quotes its
result. Plain script, two processes by default (~5 minutes for seeds 0-2 on 2 cores):

    python benchmarks/recipe_seeds.py                    # seeds 0, 1, 2
    python benchmarks/recipe_seeds.py --seeds 3 4 --json seeds.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
TESTS = Path(__file__).resolve().parents[1] / "tests"

#: One run's result: (recipe, seed, codes of every finding, codes of its warnings and errors).
Run = tuple[str, int, list[str], list[str]]


def train_one(job: tuple[str, int]) -> Run:
    """Trains one recipe at one seed (data seed too, where its data has one)."""
    import yaml

    sys.path.insert(0, str(TESTS))
    from test_scenarios import FAST, RECIPES

    from trainkit.recipe import load_recipe
    from trainkit.run import prepare_run, train_recipe

    name, seed = job
    path = RECIPES / f"{name}.yaml"
    data = yaml.safe_load(path.read_text()).get("data") or {}
    overrides = [*FAST, f"training.seed={seed}"] + ([f"data.seed={seed}"] if "seed" in data else [])
    recipe = load_recipe(path, overrides)
    prepared = prepare_run(recipe)
    prepared.trainer.checkpoint_every = 0  # only the final checkpoint: periodic ones are not studied
    with tempfile.TemporaryDirectory() as logdir:
        result = train_recipe(recipe, logdir=logdir, verbose=0, prepared=prepared)
    every = sorted({f.code for f in result.findings})
    warned = sorted({f.code for f in result.findings if f.severity in ("warning", "error")})
    return name, seed, every, warned


def score(runs: Iterable[Run], broken: Mapping[str, set[str]], clean: Iterable[str]) -> dict[str, object]:
    """Recall of the broken recipes' expected codes and the clean runs that warned.

    Args:
        runs: The runs' results (:func:`train_one`).
        broken: Recipe -> the codes it must get.
        clean: Recipes that must not warn.

    Returns:
        ``found``/``expected`` (codes), ``alarms``/``clean_runs``, and ``misses`` and
        ``false_alarms`` as ``[recipe, seed, codes]`` lists.
    """
    clean = set(clean)
    found = expected = alarms = clean_runs = 0
    misses: list[list[object]] = []
    false_alarms: list[list[object]] = []
    for name, seed, every, warned in sorted(runs):
        if name in broken:
            want = broken[name]
            expected += len(want)
            found += len(want & set(every))
            if want - set(every):
                misses.append([name, seed, sorted(want - set(every))])
        elif name in clean:
            clean_runs += 1
            if warned:
                alarms += 1
                false_alarms.append([name, seed, warned])
    return {"found": found, "expected": expected, "alarms": alarms, "clean_runs": clean_runs,
            "misses": misses, "false_alarms": false_alarms}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write every run and the score here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(TESTS))
    from test_scenarios import BROKEN, CLEAN

    jobs = [(name, seed) for seed in args.seeds for name in sorted(set(BROKEN) | set(CLEAN))]
    runs: list[Run] = []
    # A fresh process every few runs: each recipe builds its own model and compiled functions.
    with Pool(args.processes, maxtasksperchild=4) as pool:
        for run in pool.imap_unordered(train_one, jobs):
            runs.append(run)
            print(f"{run[0]:24s} seed {run[1]}  {', '.join(run[2]) or '-'}", flush=True)
    result = score(runs, {name: codes for name, (_, codes) in BROKEN.items()}, CLEAN)
    for name, seed, codes in result["misses"]:  # type: ignore[union-attr]
        print(f"missed: {name} seed {seed}: {', '.join(codes)}")
    for name, seed, codes in result["false_alarms"]:  # type: ignore[union-attr]
        print(f"false alarm: {name} seed {seed}: {', '.join(codes)}")
    print(f"recall {result['found']}/{result['expected']}, false alarms in {result['alarms']}/{result['clean_runs']} clean runs")
    if args.json:
        args.json.write_text(json.dumps({"seeds": args.seeds, "runs": runs, **result}, indent=2))


if __name__ == "__main__":
    main()
