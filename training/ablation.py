"""The photo model's ablation: what each ingredient of its recipe adds, on the development split.

    python -m training.ablation --kaggle-dir data/kaggle --seeds 0 1 --artifacts /tmp/ablation

Each row is the real trainer with `--dev 1` (trained on 80% of the Kaggle training split, scored on
the other 20%; the test split plays no part), adding one ingredient at a time from the study's
`kaggle` recipe to the registry's `photo` recipe. Writes <artifacts>/ablation.json and ablation.md.
"""
from __future__ import annotations

import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from zoo.cli import ArgumentParser, cli, table
from zoo.fileio import write_atomic
from zoo.spec import CLASSES

from .config import TrainConfig

# (what the row adds, the TrainConfig fields that make it); the last row is the `photo` recipe.
STEPS: list[tuple[str, dict[str, Any]]] = [
    ("`kaggle`: the study's LeNet-5, batch 8, 15 epochs", dict(model="kaggle")),
    ("`photo`'s network (BatchNorm, 16 and 32 filters), the same recipe",
     dict(model="photo", batch_size=8, lr=1e-3, epochs=15, hflip=False, schedule="constant")),
    ("+ mirroring, cosine schedule, 30 epochs (the previous `photo` recipe)",
     dict(model="photo", batch_size=8, lr=1e-3, epochs=30)),
    ("batch 32, peak learning rate 2e-3, 20 epochs: the `photo` recipe (a third of the time)", dict(model="photo")),
]
SCARCE = ("Pullover", "Dress", "Coat", "Shirt")  # the classes with the fewest photos, and Shirt


def run(base: TrainConfig, seeds: list[int], quiet: bool = True) -> list[dict[str, Any]]:
    """Train every step with every seed on the development split; one summary per step."""
    from .train import train

    rows = []
    for i, (what, fields) in enumerate(STEPS):
        runs = []
        for seed in seeds:
            cfg = replace(base, **fields, seed=seed, dev=True, artifacts=str(Path(base.artifacts) / f"step{i}"))
            m = train(cfg, quiet=quiet)["metrics"]
            runs.append({"seed": seed, "dev_acc": m["test_acc"], "per_class": m["test_per_class"]})
            print(f"[ablation] {what}, seed {seed}: {100 * m['test_acc']:.2f}%", file=sys.stderr)
        accs = [100 * r["dev_acc"] for r in runs]
        rows.append({
            "step": what, "config": fields, "runs": runs,
            "mean": statistics.mean(accs), "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "per_class": {c: statistics.mean(100 * r["per_class"][c] for r in runs)
                          for c in CLASSES if runs[0]["per_class"][c] is not None},
        })
    return rows


def markdown(rows: list[dict[str, Any]], seeds: list[int]) -> str:
    cells = [[r["step"], f"{r['mean']:.2f} ± {r['sd']:.2f}", f"{r['mean'] - prev['mean']:+.2f}" if prev else "",
              *(f"{r['per_class'].get(c, float('nan')):.1f}" for c in SCARCE)]
             for prev, r in zip([None, *rows], rows)]
    return "\n".join(table(["recipe", f"dev top-1 (%), {len(seeds)} seeds", "change", *SCARCE], cells)) + "\n"


@cli
def main() -> None:
    parser = ArgumentParser(prog="python -m training.ablation", description=__doc__)
    parser.add_argument("--kaggle-dir", default="data/kaggle")
    parser.add_argument("--artifacts", default="artifacts/ablation")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    base = TrainConfig(kaggle_dir=args.kaggle_dir, artifacts=args.artifacts)
    rows = run(base, args.seeds)

    out = Path(args.artifacts)
    write_atomic(out / "ablation.json", json.dumps(rows, indent=2) + "\n")
    write_atomic(out / "ablation.md", markdown(rows, args.seeds))
    print(markdown(rows, args.seeds))


if __name__ == "__main__":
    main()
