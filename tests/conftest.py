"""Shared fixtures: small synthetic datasets written in the real on-disk formats."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Light-on-dark 28x28 images whose class is learnable: a bright bar whose place and
    orientation depend on the label, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(n, 28, 28), dtype=np.uint8)
    for img, c in zip(images, labels):
        pos = 3 + 2 * c
        if c % 2:
            img[4:24, pos:pos + 3] = 220
        else:
            img[pos:pos + 3, 4:24] = 220
    return images, labels.astype(np.uint8)


def write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 2051, len(images), 28, 28) + images.tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 2049, len(labels)) + labels.tobytes())


def make_fashion_mnist(root: Path, n_train: int = 500, n_test: int = 200) -> Path:
    """A small Fashion-MNIST in torchvision's layout: <root>/FashionMNIST/raw/*-ubyte."""
    raw = root / "FashionMNIST" / "raw"
    write_idx(raw, "train", *synthetic_images(n_train, seed=1))
    write_idx(raw, "t10k", *synthetic_images(n_test, seed=2))
    return root


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fashion_mnist(tmp_path_factory.mktemp("fmnist"))
