"""Seconds per training epoch: our loop on in-memory tensors vs the naive torchvision pipeline.

Ours is `training.train.train_epoch` on `training.data.fashion_mnist`'s normalised tensors, channels-last,
as `training/train.py` runs it. Naive is a tutorial's: `torchvision.datasets.FashionMNIST` with `ToTensor()`
+ `Normalize` through a `DataLoader(shuffle=True)` and a plain loop calling `.item()` per batch. Both train
the same model on the same images with the same batch, optimiser (Adam, foreach=True) and torch threads
(TrainConfig's), so the ratio measures the data pipeline, the loop and the layout; repetitions alternate.
"""
from __future__ import annotations

import time
from typing import Any

from .stats import summary

MODELS = ("baseline", "numfilters")


def _naive_epoch(model, opt, loader) -> tuple[float, float]:
    import torch.nn.functional as F

    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in loader:
        opt.zero_grad()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
    return total_loss / seen, correct / seen


def run(data_dir: str, quick: bool, models: tuple[str, ...] = MODELS, log=print) -> dict[str, Any]:
    """Time both pipelines on a whole epoch per repetition (6,400 images when quick)."""
    if not models:
        return {"skipped": f"training compares {', '.join(MODELS)}; none selected"}
    import torch
    from torch.utils.data import DataLoader, Subset
    from torchvision import transforms
    from torchvision.datasets import FashionMNIST

    from training.config import TrainConfig
    from training.data.fashion_mnist import RAW_FILES, Split, load_fashion_mnist, raw_dir, split_indices
    from training.portable import layout
    from training.train import train_epoch
    from zoo.registry import get_model
    from zoo.spec import MEAN, STD

    missing = [n for n in RAW_FILES if not (raw_dir(data_dir) / n).exists()]
    if missing:
        return {"skipped": f"Fashion-MNIST not found in {raw_dir(data_dir)} (missing {', '.join(missing)}); "
                           f"run `make data DATA_DIR={data_dir}`"}
    cfg = TrainConfig(data_dir=str(data_dir)).resolved()
    reps = 3
    train = load_fashion_mnist(cfg.data_dir, cfg.val_fraction, cfg.split_seed)["train"]
    epoch_images = len(train)
    images = min(6400, epoch_images) if quick else epoch_images
    ours_split = Split(train.x[:images], train.y[:images])
    full = FashionMNIST(cfg.data_dir, train=True, download=False,
                        transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))]))
    train_idx, _ = split_indices(len(full), cfg.val_fraction, cfg.split_seed)  # the same 48,000 images
    naive_ds = Subset(full, train_idx[:images].tolist())

    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    out: dict[str, Any] = {
        "settings": {
            "images_timed": images, "epoch_images": epoch_images,
            "extrapolated": images < epoch_images,
            "batch_size": cfg.batch_size, "optimizer": f"Adam(lr={cfg.lr}, foreach=True)",
            "torch_threads": cfg.threads, "repetitions": reps,
            "ours": "training.train.train_epoch on in-memory normalised tensors, channels-last",
            "naive": "torchvision FashionMNIST + ToTensor + Normalize, DataLoader(batch_size="
                     f"{cfg.batch_size}, shuffle=True, num_workers=0), .item() per batch",
        },
        "models": {},
    }
    try:
        for name in models:
            def fresh():
                torch.manual_seed(cfg.seed)
                model = get_model(name)
                return model, torch.optim.Adam(model.parameters(), lr=cfg.lr, foreach=True)

            def ours() -> float:
                model, opt = fresh()
                model.to(memory_format=layout(False))  # as training.train does (the optimiser has no state yet)
                gen = torch.Generator().manual_seed(cfg.seed)
                t0 = time.perf_counter()
                train_epoch(model, opt, ours_split, cfg.batch_size, gen, None, memory_format=layout(False))
                return time.perf_counter() - t0

            def naive() -> float:
                model, opt = fresh()
                loader = DataLoader(naive_ds, batch_size=cfg.batch_size, shuffle=True,
                                    generator=torch.Generator().manual_seed(cfg.seed))
                t0 = time.perf_counter()
                _naive_epoch(model, opt, loader)
                return time.perf_counter() - t0

            # Warm-up (allocator, first-call dispatch) on a few batches of each, untimed.
            model, opt = fresh()
            warm = Split(train.x[:10 * cfg.batch_size], train.y[:10 * cfg.batch_size])
            train_epoch(model, opt, warm, cfg.batch_size, torch.Generator().manual_seed(0), None)
            _naive_epoch(model, opt, DataLoader(Subset(naive_ds, range(min(images, 10 * cfg.batch_size))),
                                                batch_size=cfg.batch_size))
            times: dict[Any, list[float]] = {ours: [], naive: []}
            for r in range(reps):  # alternating order, so that a change in machine load hits both alike
                for pipeline in ((ours, naive) if r % 2 == 0 else (naive, ours)):
                    times[pipeline].append(pipeline())
            t_ours, t_naive = times[ours], times[naive]
            scale = epoch_images / images
            row = {
                "ours_s_per_epoch": summary(t * scale for t in t_ours),
                "naive_s_per_epoch": summary(t * scale for t in t_naive),
                "speedup_vs_naive": summary(n / o for n, o in zip(t_naive, t_ours)),
            }
            out["models"][name] = row
            log(f"  training {name}: ours {row['ours_s_per_epoch']['median']:.2f} s/epoch, naive "
                f"{row['naive_s_per_epoch']['median']:.2f} s/epoch, {row['speedup_vs_naive']['median']:.2f}x")
    finally:
        torch.set_num_threads(threads_before)
    out["speedup_vs_naive"] = {n: r["speedup_vs_naive"] for n, r in out["models"].items()}
    return out
