"""Trial: does pre-training `colour`'s network on every Kaggle article type help the ten classes?

    python -m training.pretrain_trial --seed 0 --pretrain-epochs 10   # one row of the trial
    python -m training.pretrain_trial --seed 0 --pretrain-epochs 0    # the same without pre-training

On the development split only (training.data.select.development_split; the test split plays no
part). Pre-training sees every photo outside the Kaggle test split and the development split — the
mapped training photos and the ~16,800 photos of the article types no class takes — each labelled
with its own articleType (the types with at least --min-photos such photos): 'Jackets', 'Blazers',
'Sweatshirts', 'Kurtas', 'Watches', ... Then `colour`'s recipe (20 epochs, Adam 2e-3 on a cosine,
batch 32, mirroring, class weights 1/sqrt(count)) trains the ten classes from those weights (every
layer but the last) and the development split is scored: one JSON line per run.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from collections import Counter

import torch

from zoo.model import LeNet5
from zoo.registry import get_entry, get_model
from zoo.spec import CLASSES, to_input

from .data import Split
from .data.kaggle import Summary, decode, load
from .data.select import development_split
from .metrics import per_class_accuracy, predict
from .train import class_weights, cosine_lr, train_epoch

CL = torch.channels_last


def article_types(kaggle_dir: str) -> dict[int, str]:
    """id -> articleType of every well-formed row of styles.csv (the loader's rule: enough fields, an
    integer id; articleType precedes the free-text last column, so unquoted commas do not move it)."""
    with open(os.path.join(kaggle_dir, "styles.csv"), newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader)
        width, col_id, col_type = len(header), header.index("id"), header.index("articleType")
        return {int(r[col_id]): r[col_type].strip() for r in reader
                if len(r) >= width and r[col_id].strip().isdigit()}


def fit(model: torch.nn.Module, split: Split, epochs: int, lr: float, seed: int, num_classes: int) -> None:
    """`colour`'s recipe on `split`: Adam at `lr` on a cosine over every step, batch 32, mirroring,
    class weights 1/sqrt(count)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, foreach=True)
    gen = torch.Generator().manual_seed(seed)
    steps = math.ceil(len(split) / 32)
    lr_at = cosine_lr(lr, steps * epochs)
    weight = class_weights(split.y, "sqrt", num_classes)
    for epoch in range(epochs):
        loss, acc = train_epoch(model, opt, split, 32, gen, None, hflip=True, lr_at=lr_at,
                                first_step=steps * epoch, weight=weight, memory_format=CL)
        print(f"  epoch {epoch + 1}/{epochs}: loss {loss:.4f} acc {acc:.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m training.pretrain_trial", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kaggle-dir", default="data/kaggle")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrain-epochs", type=int, default=10, help="0: no pre-training (the control)")
    parser.add_argument("--min-photos", type=int, default=20, help="article types with fewer are left out")
    parser.add_argument("--finetune-lr", type=float, default=None, help="default: the recipe's 2e-3")
    args = parser.parse_args()
    torch.set_num_threads(1)
    entry = get_entry("colour")
    spec = entry.preprocess
    splits, _, _ = load(args.kaggle_dir, 0.2, 0, spec)
    dev = development_split(splits["train"], 0.2, 0)
    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    model = get_model("colour").to(memory_format=CL)
    kept: list[str] = []
    if args.pretrain_epochs:
        held_out = set(splits["test"].ids.tolist()) | set(dev["val"].ids.tolist())
        present = set(os.listdir(os.path.join(args.kaggle_dir, "images")))
        pool = {pid: t for pid, t in article_types(args.kaggle_dir).items()
                if f"{pid}.jpg" in present and pid not in held_out}
        counts = Counter(pool.values())
        kept = sorted(t for t, n in counts.items() if n >= args.min_photos)
        index = {t: i for i, t in enumerate(kept)}
        items = sorted((pid, index[t]) for pid, t in pool.items() if t in index)
        _, labels, pixels = decode(args.kaggle_dir, items, spec, Summary())
        pre = Split(torch.from_numpy(to_input(pixels, spec)), torch.from_numpy(labels))
        print(f"pre-training on {len(pre):,} photos of {len(kept)} article types", flush=True)
        net = LeNet5(**{**entry.kwargs, "num_classes": len(kept)}).to(memory_format=CL)
        fit(net, pre, args.pretrain_epochs, entry.recipe["lr"], args.seed, len(kept))
        last = [k for k in net.state_dict() if k.startswith("classifier.")][-2:]  # the last Linear
        body = {k: v for k, v in net.state_dict().items() if k not in last}
        missing, unexpected = model.load_state_dict(body, strict=False)
        assert sorted(missing) == sorted(last) and not unexpected, (missing, unexpected)
    print(f"training the ten classes on {len(dev['train']):,} photos", flush=True)
    fit(model, dev["train"], entry.recipe["epochs"], args.finetune_lr or entry.recipe["lr"], args.seed,
        len(CLASSES))
    pred = predict(model, dev["val"])
    per_class = per_class_accuracy(pred, dev["val"].y)
    scored = [a for a in per_class.values() if a is not None]
    print(json.dumps({
        "seed": args.seed, "pretrain_epochs": args.pretrain_epochs, "article_types": len(kept),
        "finetune_lr": args.finetune_lr or entry.recipe["lr"],
        "dev_top1": round(100 * float((pred == dev["val"].y).float().mean()), 2),
        "balanced": round(100 * sum(scored) / len(scored), 2),
        "per_class": {c: None if a is None else round(100 * a, 1) for c, a in per_class.items()},
        "seconds": round(time.perf_counter() - t0)}), flush=True)


if __name__ == "__main__":
    main()
