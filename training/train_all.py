"""Train the whole zoo with each model's recipe, retrain the best on train+validation, assemble the
ensemble from the finished models, report.

    python -m training.train_all                 # what `make train-all` runs
    python -m training.train_all --epochs 1      # a quick pass

Models train in parallel worker processes (one thread each, so results are identical to
`python -m training.train`). Finished models are skipped, interrupted ones resume.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import replace
from typing import Any

from zoo.cli import EXPECTED, RESUMES, cli
from zoo.errors import ZooError
from zoo.registry import assembled_models, describe, get_entry, list_models, trainable_models

from . import portable
from .config import TrainConfig, config_from_args, config_parser

_slot: Any = None
# Training images per epoch, by dataset (the Kaggle figure is the local copy's): only to order the jobs
# by their work (multiply-accumulates x epochs x images), longest first where it matters.
TRAINING_IMAGES = {"fashion-mnist": 48_000, "kaggle": 19_711}


def _init_worker(counter: Any) -> None:
    global _slot
    with counter.get_lock():
        _slot = counter.value
        counter.value += 1


def _train_one(cfg: TrainConfig) -> float | None:
    """Train `cfg` in a worker, on that worker's row of progress bars; its validation accuracy."""
    from .train import train

    return train(cfg, position=_slot or 0)["metrics"]["val_acc"]


def _job(name: str, fn: Callable[..., Any], *args: Any) -> tuple[str, Any, str | None]:
    """(name, fn(*args), None), or (name, None, the one-line error) when it fails as expected."""
    try:
        return name, fn(*args), None
    except EXPECTED as e:
        return name, None, str(e)


def run(cfg: TrainConfig, jobs: int) -> None:
    from .auto_eval import evaluate_auto
    from .data.fashion_mnist import load_pixels
    from .ensemble import build_all
    from .kaggle_eval import evaluate
    from .report import read_auto, results_markdown, write_reports

    for train in (True, False):  # fail fast, in one line, if the data is missing or corrupt
        load_pixels(cfg.data_dir, train=train)
    names = trainable_models("fashion-mnist")
    have_kaggle = os.path.exists(os.path.join(cfg.kaggle_dir, "styles.csv"))
    for name in list_models("kaggle"):
        if have_kaggle:
            names.append(name)
        else:
            print(f"skipping {name}: no styles.csv in {cfg.kaggle_dir} (set KAGGLE_DIR=..., or "
                  f"`make data-kaggle` with Kaggle credentials)", file=sys.stderr)
    # Fashion-MNIST models first, most multiply-accumulates first; then the photo models. When the
    # last Fashion-MNIST model finishes, the best one's retrain and the ensemble are queued ahead of
    # the photo models, to run beside them rather than alone at the end; a photo model with more work
    # than any Fashion-MNIST model (`colour`, the longest job) starts first, on a core of its own.
    macs = {n: describe(n)["macs"] for n in names}
    work = {n: macs[n] * replace(cfg, model=n).resolved().epochs * TRAINING_IMAGES[get_entry(n).dataset]
            for n in names}
    heaviest = max(work[n] for n in names if get_entry(n).dataset == "fashion-mnist")
    names.sort(key=lambda n: (work[n] <= heaviest, get_entry(n).dataset != "fashion-mnist", -macs[n]))
    fashion = trainable_models("fashion-mnist")
    t0 = time.perf_counter()
    val: dict[str, float] = {}
    failed: dict[str, str] = {}
    pending: deque[tuple] = deque((n, _train_one, replace(cfg, model=n)) for n in names)  # _job's arguments
    fashion_done = False
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(ctx.Value("i", 0),)) as pool:
        running = set()
        while pending or running:
            while pending and len(running) < jobs:
                running.add(pool.submit(_job, *pending.popleft()))
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                name, acc, err = fut.result()
                if err:
                    failed[name] = err
                    print(f"error: {err}", file=sys.stderr)
                elif name in fashion:
                    val[name] = acc
            if not fashion_done and all(n in val or n in failed for n in fashion):
                fashion_done = True
                if assembled_models():  # the ensemble: assembled (not trained) from the finished models
                    pending.appendleft(("ensemble", build_all, cfg.artifacts, cfg.data_dir))
                if len(val) == len(fashion):
                    best = max(fashion, key=val.get)  # ties: the first in the registry
                    print(f"best by validation accuracy: {best} ({100 * val[best]:.2f}%); "
                          f"retraining it on train+validation", file=sys.stderr)
                    pending.appendleft((f"{best}+trainval", _train_one, replace(cfg, model=best, trainval=True)))
    # Every finished model on the Kaggle test split (the photo models' confusion matrices, the
    # Fashion-MNIST models' cross-domain accuracy, stored in their checkpoints); then model=auto, the
    # service's default, scored as the service runs it (reports/auto.json).
    evaluations = [("auto evaluation", evaluate_auto, cfg.artifacts, cfg.data_dir,
                    cfg.kaggle_dir if have_kaggle else None, cfg.val_fraction, cfg.split_seed)]
    if have_kaggle:
        evaluations.insert(0, ("kaggle evaluation", evaluate, cfg.artifacts, cfg.kaggle_dir, cfg.val_fraction,
                               cfg.split_seed))
    for name, _, err in (_job(*e) for e in evaluations):
        if err:
            failed[name] = err
            print(f"error: {err}", file=sys.stderr)
    results = write_reports(cfg.artifacts)
    print(results_markdown(results, read_auto(cfg.artifacts)))
    print(f"train-all finished in {time.perf_counter() - t0:.0f}s wall-clock; reports in "
          f"{os.path.join(cfg.artifacts, 'reports')}", file=sys.stderr)
    if failed:
        raise ZooError(f"{len(failed)} model(s) failed: {', '.join(failed)}")


@cli(interrupted=RESUMES)
def main() -> None:
    parser = config_parser("python -m training.train_all", __doc__, skip=("model", "trainval"))
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="models trained at once (default: 2, or 1 on a one-core machine)")
    args = parser.parse_args()
    if args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
    cfg = config_from_args(args)
    if cfg.portable:  # the workers inherit the environment; the evaluations here run in the mode too
        portable.reexec("training.train_all")
        portable.apply()
    run(cfg, args.jobs)


if __name__ == "__main__":
    main()
