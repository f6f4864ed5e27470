"""Checkpoints: the one place that says where they live and what they hold (a plain dict built by
`make_checkpoint`), writing them atomically, reading them back, rebuilding the model. Importing
this module does not import torch.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from zoo.errors import ZooError
from zoo.fileio import replacing
from zoo.registry import get_entry, get_model, list_models
from zoo.spec import CLASSES

if TYPE_CHECKING:
    from torch import nn

    from .config import TrainConfig

CHECKPOINT_FORMAT = 1


def checkpoints_dir(artifacts: str | os.PathLike) -> Path:
    """<artifacts>/checkpoints: the served models' checkpoints (export and publish read these)."""
    return Path(artifacts) / "checkpoints"


def checkpoint_file(artifacts: str | os.PathLike, name: str, sub: str = "") -> Path:
    """<artifacts>/checkpoints/[<sub>/]<name>.pt; `sub`: "trainval" (the train+validation retrain)
    or "dev" (a photo model trained on its development split)."""
    return checkpoints_dir(artifacts) / sub / f"{name}.pt"


def checkpoint_path(cfg: TrainConfig) -> Path:
    """Where training `cfg` writes: <artifacts>/checkpoints/[trainval/|dev/]<model>.pt; reports and
    export read the first two."""
    return checkpoint_file(cfg.artifacts, cfg.model, "trainval" if cfg.trainval else "dev" if cfg.dev else "")


def make_checkpoint(model: nn.Module, *, name: str, kwargs: dict[str, Any], metrics: dict[str, Any],
                    history: list[dict[str, float]], config: dict[str, Any], config_identity: dict[str, Any],
                    preprocess: dict[str, Any], epoch: int, complete: bool, seconds: float,
                    **extra: Any) -> dict[str, Any]:
    """The checkpoint dict of registry model `name` (LeNet5 `kwargs`) as `model` is now: its weights
    and size, what it scored, how it was made (config, preprocessing, epochs), plus `extra` (a
    trained model's optimizer and random-number state, an assembled one's selection). The keys are
    always in this order, so the same contents give the same bytes."""
    return {
        "format": CHECKPOINT_FORMAT,
        "name": name,
        "kwargs": kwargs,
        "state_dict": {k: v.contiguous() for k, v in model.state_dict().items()},  # in the default layout
        "params": sum(p.numel() for p in model.parameters()),
        "metrics": metrics,
        "history": history,
        "config": config,
        "config_identity": config_identity,
        "classes": list(CLASSES),
        "preprocess": preprocess,
        "dataset": get_entry(name).dataset,
        "epoch": epoch,
        "complete": complete,
        "seconds": seconds,
        **extra,
    }


def save_atomic(obj: Any, path: Path) -> None:
    import torch

    with replacing(path) as tmp:
        torch.save(obj, tmp)


def weights_sha256(state_dict: dict[str, Any]) -> str:
    """A fingerprint of a model's weights (names, dtypes, shapes, values), independent of the
    checkpoint's other contents: the Kaggle evaluation rewrites member checkpoints, not weights."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint dict, with a one-line error for a truncated or foreign file."""
    import torch

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
    for name in list_models():
        for sub, key in (("", name), ("trainval", f"{name}+trainval")):
            path = checkpoint_file(artifacts, name, sub)
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
