"""Checkpoints: where they live, writing them atomically, reading them back, rebuilding the model.

A checkpoint is a plain dict (weights, config, metrics, history, preprocessing, ...) written after
every epoch; `finished_checkpoints` walks the complete ones in registry order.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch

from zoo.errors import ZooError
from zoo.registry import get_entry, get_model, list_models

if TYPE_CHECKING:
    from torch import nn

    from .config import TrainConfig

CHECKPOINT_FORMAT = 1


def checkpoint_path(cfg: TrainConfig) -> Path:
    """<artifacts>/checkpoints/[trainval/|dev/]<model>.pt; reports and export read the first two."""
    sub = "trainval" if cfg.trainval else "dev" if cfg.dev else ""
    return Path(cfg.artifacts) / "checkpoints" / sub / f"{cfg.model}.pt"


def save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict, with a one-line error for a truncated or foreign file."""
    path = Path(path)
    if not path.exists():
        raise ZooError(f"{path}: no such checkpoint; train it with `make train MODEL={path.stem}`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ZooError(f"{path}: unreadable checkpoint ({type(e).__name__}); delete it and retrain") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ZooError(f"{path}: not a fashion-zoo checkpoint (format {CHECKPOINT_FORMAT}); delete it and retrain")
    return ckpt


def finished_checkpoints(artifacts: str | os.PathLike) -> Iterator[tuple[str, Path, dict[str, Any]]]:
    """(key, path, checkpoint) of every finished checkpoint, in registry order; the train+validation
    retrain of a model comes right after it, keyed "<name>+trainval"."""
    ckpt_dir = Path(artifacts) / "checkpoints"
    for name in list_models():
        for sub, key in (("", name), ("trainval", f"{name}+trainval")):
            path = ckpt_dir / sub / f"{name}.pt"
            if path.exists():
                ckpt = load_checkpoint(path)
                if ckpt["complete"]:
                    yield key, path, ckpt


def build_model(ckpt: dict[str, Any]) -> nn.Module:
    """The registry's architecture for the checkpoint's name, with its weights, in eval mode (an
    assembled model's members are those its checkpoint names)."""
    assembled = get_entry(ckpt["name"]).members is not None
    model = get_model(ckpt["name"], **(ckpt["kwargs"] if assembled else {}))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
