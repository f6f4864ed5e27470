"""The training data: Fashion-MNIST (`fashion_mnist`), the Kaggle fashion products (`kaggle`), and
which of them a model is trained on (`select`).

Every loader returns `Split`s: the whole split as one tensor, so the training loop does no
per-sample work.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Split:
    x: torch.Tensor   # (N, 1, H, W) float32, normalised
    y: torch.Tensor   # (N,) int64

    def __len__(self) -> int:
        return len(self.y)
