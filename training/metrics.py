"""Scoring a model on a split: loss and top-1, predictions, per-class accuracy, confusion counts."""
from __future__ import annotations

import torch
from torch import nn

from zoo.spec import CLASSES

from .data import Split


@torch.inference_mode()
def evaluate(model: nn.Module, split: Split, batch_size: int = 1000) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy) of `model` on `split`."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(split), batch_size):
        logits = model(split.x[i:i + batch_size])
        y = split.y[i:i + batch_size]
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    return loss_sum / len(split), correct / len(split)


@torch.inference_mode()
def predict(model: nn.Module, split: Split, batch_size: int = 1000) -> torch.Tensor:
    """Predicted class of every image in `split` (eval mode)."""
    model.eval()
    return torch.cat([model(split.x[i:i + batch_size]).argmax(1) for i in range(0, len(split), batch_size)])


def per_class_accuracy(pred: torch.Tensor, y: torch.Tensor) -> dict[str, float | None]:
    """Accuracy per class label (None for a class with no images)."""
    out: dict[str, float | None] = {}
    for c, label in enumerate(CLASSES):
        mask = y == c
        out[label] = (pred[mask] == c).float().mean().item() if mask.any() else None
    return out


def confusion_matrix(y: torch.Tensor, pred: torch.Tensor) -> list[list[int]]:
    """Counts [true class][predicted class]."""
    n = len(CLASSES)
    return torch.bincount(y * n + pred, minlength=n * n).reshape(n, n).tolist()
