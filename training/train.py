"""Train one zoo model with the study's recipe; resumable, reproducible, fast on a CPU.

    python -m training.train --model numfilters            # 15 epochs, Adam 1e-3, batch 32
    python -m training.train --model baseline --epochs 1   # a quick run

Writes <artifacts>/checkpoints/<model>.pt after every epoch (atomically). Running the same
command again resumes from the last finished epoch, or does nothing if training is complete.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from typing import Any, Callable

import torch
from torch import nn

from zoo.cli import RESUMES, cli
from zoo.errors import ZooError
from zoo.registry import default_preprocess, get_entry, get_model
from zoo.spec import CLASSES

from . import portable
from .checkpoint import checkpoint_path, load_checkpoint, make_checkpoint, save_atomic
from .config import TrainConfig, config_from_args, config_parser
from .data import Split
from .data.select import load_data
from .metrics import evaluate, per_class_accuracy, predict


def cosine_lr(peak: float, total_steps: int) -> Callable[[int], float]:
    """Learning rate at each optimiser step: `peak` at step 0, halfway down a cosine to 0 at the end."""
    return lambda step: peak * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))


def shifted(x: torch.Tensor, max_shift: int, gen: torch.Generator, fill: float) -> torch.Tensor:
    """Each image of x (N, C, H, W) moved by its own (dy, dx), each drawn uniformly from
    [-max_shift, max_shift] with `gen`; what moves in is `fill` (the background)."""
    n, _, h, w = x.shape
    d = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=gen)
    padded = nn.functional.pad(x, (max_shift,) * 4, value=fill)
    out = torch.empty_like(x)
    # One slice per distinct offset (at most (2 * max_shift + 1) ** 2), not one per image.
    for dy, dx in torch.unique(d, dim=0).tolist():
        rows = ((d[:, 0] == dy) & (d[:, 1] == dx)).nonzero().squeeze(1)
        out[rows] = padded[rows, :, max_shift - dy:max_shift - dy + h, max_shift - dx:max_shift - dx + w]
    return out


def class_weights(labels: torch.Tensor, how: str, num_classes: int) -> torch.Tensor | None:
    """Cross-entropy weights from the training labels' counts: None for "none"; 1/sqrt(count) for
    "sqrt", 1/count for "balanced"; scaled so that the mean weight per training image is 1. A class
    with no images gets weight 0 (it never appears as a target)."""
    if how == "none":
        return None
    counts = torch.bincount(labels, minlength=num_classes).double()
    w = torch.where(counts > 0, counts.clamp(min=1).pow(-0.5 if how == "sqrt" else -1.0), torch.zeros(()))
    return (w * len(labels) / (w * counts).sum()).float()


def jittered(x: torch.Tensor, amount: float, gen: torch.Generator) -> torch.Tensor:
    """Each image of x (N, C, H, W) scaled by a factor in [1 - amount, 1 + amount] and shifted by an
    offset in [-amount, amount] per channel (normalised units), both drawn uniformly with `gen`."""
    n, c = x.shape[:2]
    scale = 1.0 + amount * (2.0 * torch.rand(n, 1, 1, 1, generator=gen) - 1.0)
    offset = amount * (2.0 * torch.rand(n, c, 1, 1, generator=gen) - 1.0)
    return x * scale + offset


def train_epoch(model: nn.Module, opt: torch.optim.Optimizer, split: Split, batch_size: int,
                gen: torch.Generator, progress: Any, hflip: bool = False,
                lr_at: Callable[[int], float] | None = None, first_step: int = 0,
                shift: int = 0, label_smoothing: float = 0.0, weight: torch.Tensor | None = None,
                jitter: float = 0.0, memory_format: torch.memory_format = torch.contiguous_format,
                ) -> tuple[float, float]:
    """One pass over `split` in a random order; returns (mean loss, accuracy) measured while training.

    The augmentations (`hflip`: mirror with probability 1/2, `shift`, `jitter`) draw from `gen`, so a
    run is reproducible; `lr_at(first_step + k)` is the learning rate of the epoch's k-th step."""
    fill = float(split.x.min()) if shift else 0.0  # the darkest level: the background after inversion
    model.train()
    order = torch.randperm(len(split), generator=gen)
    loss_sum = torch.zeros(())
    correct = torch.zeros((), dtype=torch.long)
    seen = 0
    for step, i in enumerate(range(0, len(split), batch_size)):
        idx = order[i:i + batch_size]
        x, y = split.x[idx], split.y[idx]
        if hflip:
            mirror = torch.rand(len(idx), generator=gen) < 0.5
            x[mirror] = x[mirror].flip(3)  # x is a copy (advanced indexing), so this leaves the data alone
        if shift:
            x = shifted(x, shift, gen, fill)
        if jitter:
            x = jittered(x, jitter, gen)
        if lr_at is not None:
            for group in opt.param_groups:
                group["lr"] = lr_at(first_step + step)
        logits = model(x.contiguous(memory_format=memory_format))
        loss = nn.functional.cross_entropy(logits, y, weight=weight, label_smoothing=label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if progress is not None:
            progress.update(len(y))
            if step % 50 == 0:
                progress.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.4f}")
    return loss_sum.item() / seen, correct.item() / seen


def train(cfg: TrainConfig, position: int = 0, quiet: bool = False) -> dict[str, Any]:
    """Train (or resume, or skip if already done) and return the final checkpoint dict."""
    from .tqdm_fixes import Bar as tqdm  # tqdm, safe to interrupt while a bar is made

    say = (lambda *_: None) if quiet else functools.partial(print, file=sys.stderr)
    entry = get_entry(cfg.model)
    cfg = cfg.resolved()
    if cfg.portable:
        portable.apply()  # one thread, whatever cfg.threads says
    else:
        torch.set_num_threads(cfg.threads)
    path = checkpoint_path(cfg)
    ckpt = load_checkpoint(path) if path.exists() else None
    if ckpt is not None:
        why = ("--force" if cfg.force
               else "its config differs" if ckpt["config_identity"] != cfg.identity()
               else "its preprocessing differs" if ckpt["preprocess"] != default_preprocess(cfg.model)
               else f"it has {ckpt['epoch']} epochs, {cfg.epochs} asked" if ckpt["epoch"] > cfg.epochs
               or (ckpt["epoch"] == cfg.epochs and not ckpt["complete"]) else None)
        if why:
            say(f"[{cfg.model}] starting over ({why}): {path}")
            ckpt = None
    if ckpt is not None and ckpt["complete"] and ckpt["epoch"] >= cfg.epochs:
        say(f"[{cfg.model}] up to date ({ckpt['epoch']} epochs): {path}; --force 1 retrains")
        return ckpt

    splits, preprocess = load_data(cfg)
    train_split = splits["train"]
    if cfg.trainval:
        train_split = Split(torch.cat([splits["train"].x, splits["val"].x]),
                            torch.cat([splits["train"].y, splits["val"].y]))

    torch.manual_seed(cfg.seed)
    memory_format = portable.layout(cfg.portable)  # channels-last natively
    model = get_model(cfg.model).to(memory_format=memory_format)
    opt = portable.make_optimizer(model.parameters(), cfg.lr, cfg.portable)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, float]] = []
    seconds = 0.0
    if ckpt is not None:  # resume from the last finished epoch
        model.load_state_dict(ckpt["state_dict"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["rng"]["shuffle"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        history, seconds = list(ckpt["history"]), ckpt["seconds"]
        say(f"[{cfg.model}] resuming after epoch {ckpt['epoch']}: {path}")

    # The processor and mode of this run; a resumed run that moved to another processor says so.
    trained_on = {"mode": portable.mode_name(cfg.portable), "processor": portable.processor()}
    if ckpt is not None and ckpt.get("trained_on", trained_on) != trained_on:
        say(f"[{cfg.model}] note: epochs 1-{ckpt['epoch']} ran on "
            f"{portable.describe_processor(ckpt['trained_on']['processor'])}, the rest on "
            f"{portable.describe_processor(trained_on['processor'])}")
    if not history:
        say(f"[{cfg.model}] {sum(p.numel() for p in model.parameters()):,} parameters, "
            f"{len(train_split):,} training images, config {dataclasses.asdict(cfg)}")
    steps = math.ceil(len(train_split) / cfg.batch_size)  # optimiser steps per epoch
    lr_at = cosine_lr(cfg.lr, steps * cfg.epochs) if cfg.schedule == "cosine" else None
    weight = class_weights(train_split.y, cfg.class_weights, len(CLASSES))
    for epoch in range(len(history) + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        desc = f"{cfg.model}{'+trainval' if cfg.trainval else ''} {epoch}/{cfg.epochs}"
        with tqdm(total=len(train_split), desc=desc, unit="img", unit_scale=True, position=position,
                  leave=False, disable=quiet, file=sys.stderr, mininterval=0.5) as bar:
            train_loss, train_acc = train_epoch(model, opt, train_split, cfg.batch_size, gen, bar,
                                                hflip=cfg.hflip, lr_at=lr_at, first_step=steps * (epoch - 1),
                                                shift=cfg.shift, label_smoothing=cfg.label_smoothing,
                                                weight=weight, jitter=cfg.jitter, memory_format=memory_format)
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc}
        if not cfg.trainval:
            row["val_loss"], row["val_acc"] = evaluate(model, splits["val"])
        row["seconds"] = time.perf_counter() - t0
        if not math.isfinite(train_loss):
            raise ZooError(f"[{cfg.model}] training diverged (loss {train_loss}); try a smaller --lr")
        history.append(row)
        seconds += row["seconds"]
        if not quiet:
            val = f" val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}" if "val_acc" in row else ""
            tqdm.write(f"[{desc}] train loss {train_loss:.4f} acc {train_acc:.4f}{val} "
                       f"({row['seconds']:.1f}s)", file=sys.stderr)
        done = epoch == cfg.epochs
        metrics = {"train_acc": train_acc, "train_loss": train_loss,
                   "val_acc": row.get("val_acc"), "val_loss": row.get("val_loss")}
        if splits["val"] is splits["test"]:  # no validation set (kaggle): the curve shows test
            metrics["val_acc"] = metrics["val_loss"] = None
        if done:
            metrics["test_loss"], metrics["test_acc"] = evaluate(model, splits["test"])
            metrics["test_per_class"] = per_class_accuracy(predict(model, splits["test"]), splits["test"].y)
        ckpt = make_checkpoint(model, name=cfg.model, kwargs=entry.kwargs, metrics=metrics, history=history,
                               config=dataclasses.asdict(cfg), config_identity=cfg.identity(), preprocess=preprocess,
                               epoch=epoch, complete=done, seconds=seconds, trained_on=trained_on,
                               optimizer=opt.state_dict(),
                               rng={"shuffle": gen.get_state(), "torch": torch.get_rng_state()})
        save_atomic(ckpt, path)
    m = ckpt["metrics"]
    val = f" val {m['val_acc']:.4f}" if m["val_acc"] is not None else ""
    say(f"[{cfg.model}{'+trainval' if cfg.trainval else ''}] done in {seconds:.0f}s: train {m['train_acc']:.4f}{val} "
        f"test {m['test_acc']:.4f} -> {path}")
    return ckpt


@cli(interrupted=RESUMES)
def main() -> None:
    cfg = config_from_args(config_parser("python -m training.train", __doc__).parse_args())
    get_entry(cfg.model)
    if cfg.portable:
        portable.reexec("training.train")
    train(cfg)


if __name__ == "__main__":
    main()
