"""The study's recipe, found from the study's own figures: a grid of batch sizes and seeds.

    python -m training.study                     # what `make study` runs: batch 32 and 64, 3 seeds
    python -m training.study --seeds 5 --batch-sizes 16 32 64 --jobs 2

Each run is an ordinary `training.train` run of one of the study's Fashion-MNIST variants (only the
batch size and the seed change) into <artifacts>/study/b<batch>-s<seed>/, so an interrupted grid
resumes. Writes <artifacts>/reports/study.{json,md}: mean ± sd over the seeds per variant and batch
size, and the batch size closest to the study's train and validation figures (never test).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

from zoo.cli import EXPECTED, RESUMES, cli, table
from zoo.errors import ZooError
from zoo.fileio import write_atomic
from zoo.registry import describe, trainable_models

from . import portable
from .config import TrainConfig, config_from_args, config_parser
from .report import STUDY

BATCH_SIZES = (32, 64)
SEEDS = 3


def run_dir(artifacts: str | os.PathLike, batch_size: int, seed: int) -> Path:
    """Where one grid run writes its checkpoints: <artifacts>/study/b<batch>-s<seed>."""
    return Path(artifacts) / "study" / f"b{batch_size}-s{seed}"


def variants() -> list[str]:
    """The study's Fashion-MNIST variants (the registry's models that the study reported)."""
    return [n for n in trainable_models("fashion-mnist") if n in STUDY]


def grid(cfg: TrainConfig, batch_sizes: list[int], seeds: int, models: list[str] | None = None) -> list[TrainConfig]:
    """One config per (variant, batch size, seed), the most multiply-accumulates first."""
    names = sorted(models or variants(), key=lambda n: -describe(n)["macs"])
    return [replace(cfg, model=n, batch_size=b, seed=s, artifacts=str(run_dir(cfg.artifacts, b, s)))
            for s in range(seeds) for b in batch_sizes for n in names]


def _train(cfg: TrainConfig) -> dict[str, Any]:
    from .train import train

    m = train(cfg, quiet=True)["metrics"]
    return {"model": cfg.model, "batch_size": cfg.batch_size, "seed": cfg.seed,
            **{k: m[k] for k in ("train_acc", "val_acc", "test_acc")}}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The table: per variant and batch size mean and sd (percent) of each split over the seeds, the
    study's figures and the differences; the chosen batch size and why."""
    rows: dict[str, dict[str, Any]] = {}
    for r in runs:
        rows.setdefault(f"{r['model']}@{r['batch_size']}", {"model": r["model"], "batch_size": r["batch_size"],
                                                             "seeds": []})["seeds"].append(r)
    distance: dict[int, list[float]] = {}
    for row in rows.values():
        for split in ("train", "val", "test"):
            values = [100 * r[f"{split}_acc"] for r in row["seeds"]]
            row[split] = statistics.fmean(values)
            row[f"{split}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        row["study_train"], row["study_val"] = STUDY[row["model"]]
        row["train_diff"], row["val_diff"] = row["train"] - row["study_train"], row["val"] - row["study_val"]
        row["seeds"] = sorted(r["seed"] for r in row["seeds"])
        distance.setdefault(row["batch_size"], []).extend([abs(row["train_diff"]), abs(row["val_diff"])])
    mean_distance = {b: statistics.fmean(d) for b, d in sorted(distance.items())}
    chosen = min(mean_distance, key=mean_distance.get)
    return {"rows": sorted(rows.values(), key=lambda r: (r["batch_size"], list(STUDY).index(r["model"]))),
            "mean_distance": mean_distance, "chosen_batch_size": chosen}


def markdown(summary: dict[str, Any]) -> str:
    lines = table(["model", "batch", "seeds", "train", "val", "test", "study train", "study val", "train − study",
                   "val − study"],
                  ([f"`{r['model']}`", r["batch_size"], len(r["seeds"]),
                    *(f"{r[k]:.2f} ± {r[f'{k}_sd']:.2f}" for k in ("train", "val", "test")),
                    *(f"{r[k]:.2f}" for k in ("study_train", "study_val")),
                    *(f"{r[k]:+.2f}" for k in ("train_diff", "val_diff"))]
                   for r in summary["rows"]))
    lines.append("")
    lines += [f"Mean |ours − study| over train and validation, batch {b}: {d:.2f} points"
              for b, d in summary["mean_distance"].items()]
    lines.append(f"\nChosen: batch {summary['chosen_batch_size']} (mean ± sd over the seeds; top-1 %).")
    return "\n".join(lines) + "\n"


def run(cfg: TrainConfig, batch_sizes: list[int], seeds: int, jobs: int,
        models: list[str] | None = None) -> dict[str, Any]:
    from .tqdm_fixes import Bar as tqdm  # tqdm, safe to interrupt while a bar is made

    configs = grid(cfg, batch_sizes, seeds, models)
    t0 = time.perf_counter()
    runs, failed = [], []
    with (ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool,
          tqdm(total=len(configs), desc="study grid", unit="run", file=sys.stderr) as bar):
        futures = {pool.submit(_train, c): c for c in configs}
        for fut in as_completed(futures):
            c = futures[fut]
            try:
                r = fut.result()
            except EXPECTED as e:
                failed.append(f"{c.model} batch {c.batch_size} seed {c.seed}: {e}")
                continue
            runs.append(r)
            bar.update(1)
            tqdm.write(f"[{r['model']} batch {r['batch_size']} seed {r['seed']}] train {100 * r['train_acc']:.2f} "
                       f"val {100 * r['val_acc']:.2f} test {100 * r['test_acc']:.2f}", file=sys.stderr)
    if failed:
        raise ZooError(f"{len(failed)} run(s) failed (the finished ones are kept; run again to resume): "
                       + "; ".join(failed))
    summary = {**summarise(runs), "mode": portable.mode_name(cfg.portable), "processor": portable.processor(),
               "epochs": cfg.resolved().epochs if cfg.epochs is None else cfg.epochs,
               "runs": sorted(runs, key=lambda r: (r["batch_size"], r["model"], r["seed"]))}
    reports = Path(cfg.artifacts) / "reports"
    write_atomic(reports / "study.json", json.dumps(summary, indent=1) + "\n")
    write_atomic(reports / "study.md", markdown(summary))
    print(markdown(summary))
    print(f"study grid: {len(runs)} runs in {time.perf_counter() - t0:.0f}s wall-clock; "
          f"{reports / 'study.md'}", file=sys.stderr)
    return summary


@cli(interrupted=RESUMES)
def main() -> None:
    parser = config_parser("python -m training.study", __doc__, skip=("model", "trainval", "batch_size", "seed", "dev"))
    parser.add_argument("--seeds", type=int, default=SEEDS, help="seeds 0..N-1 per batch size (default: %(default)s)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES),
                        help="(default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs at once (default: the cores)")
    parser.add_argument("--models", nargs="+", default=None, metavar="MODEL",
                        help=f"a part of the grid (default: all of {', '.join(variants())})")
    args = parser.parse_args()
    if args.seeds < 1 or args.jobs < 1 or min(args.batch_sizes) < 1:
        raise ValueError("--seeds, --jobs and --batch-sizes must be positive")
    for name in args.models or []:
        if name not in variants():
            raise ValueError(f"Unknown study variant {name!r}; choose from: {', '.join(variants())}")
    cfg = config_from_args(args)
    if cfg.portable:
        portable.reexec("training.study")
    run(cfg, args.batch_sizes, args.seeds, args.jobs, args.models)


if __name__ == "__main__":
    main()
