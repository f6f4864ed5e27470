"""Fashion-MNIST as in-memory tensors, and `make data` to put the raw files in place.

    python -m training.data.fashion_mnist --data-dir data     # copy from Debian's package, else download

`make data` installs the Debian package (dataset-fashion-mnist) where it can; this module never
installs OS packages. Training holds the whole dataset as one normalised float tensor (no
per-sample PIL/ToTensor work in the training loop), read with torchvision's FashionMNIST.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import sys
from pathlib import Path

import torch

from zoo.cli import ArgumentParser, cli
from zoo.errors import ZooError
from zoo.fileio import replacing
from zoo.spec import FASHION_MNIST_PREPROCESS

from . import Split

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
GET_IT = (f"run `make data` (it copies from {DEBIAN_DIR}, installs the Debian package "
          f"{DEBIAN_PACKAGE}, or downloads with torchvision)")


def raw_dir(data_dir: str | os.PathLike) -> Path:
    return Path(data_dir) / "FashionMNIST" / "raw"


# md5 and size of the four unpacked files. Checked on the unpacked bytes because Debian's package
# re-compresses them (its .gz files differ from the upstream ones; their content does not).
RAW_FILES = {
    "train-images-idx3-ubyte": ("f4a8712d7a061bf5bd6d2ca38dc4d50a", 47_040_016),
    "train-labels-idx1-ubyte": ("9018921c3c673c538a1fc5bad174d6f9", 60_008),
    "t10k-images-idx3-ubyte": ("8181f5470baa50b63fa0f6fddb340f0a", 7_840_016),
    "t10k-labels-idx1-ubyte": ("15d484375f8d13e6eb1aabb0c3f46965", 10_008),
}


def _real(path: Path, name: str = "") -> bool | None:
    """Whether `path` holds the real dataset's file `name` (default: its own name), by its md5; None
    when it is not that file's size (a small test set, say)."""
    md5, size = RAW_FILES[name or path.name]
    if not path.exists() or path.stat().st_size != size:
        return None
    return hashlib.md5(path.read_bytes()).hexdigest() == md5


def _install_from(source: Path, data_dir: Path) -> None:
    """Unpack the four .gz files from `source` into `data_dir`, checking each, atomically."""
    dest = raw_dir(data_dir)
    dest.mkdir(parents=True, exist_ok=True)
    for name in RAW_FILES:
        src = source / f"{name}.gz"
        if not src.exists():
            raise ZooError(f"{src} is missing; {GET_IT}")
        with replacing(dest / name) as tmp:
            try:
                with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
            except (OSError, EOFError) as e:
                raise ZooError(f"{src} is corrupt ({e}); reinstall it or {GET_IT}") from None
            if not _real(tmp, name):
                raise ZooError(f"{src} is corrupt (md5 mismatch); reinstall it or {GET_IT}")


def _have(data_dir: Path) -> bool:
    return all((raw_dir(data_dir) / name).exists() for name in RAW_FILES)


def prepare(data_dir: str | os.PathLike) -> str:
    """Make sure Fashion-MNIST's raw files are under `data_dir`; returns where they came from."""
    data_dir = Path(data_dir)
    if _have(data_dir):
        return "already present"
    if DEBIAN_DIR.is_dir():
        _install_from(DEBIAN_DIR, data_dir)
        return f"copied from {DEBIAN_DIR}"
    try:
        import socket

        from torchvision.datasets import FashionMNIST

        socket.setdefaulttimeout(20)
        print("downloading Fashion-MNIST with torchvision...", file=sys.stderr)
        FashionMNIST(str(data_dir), train=True, download=True)
        FashionMNIST(str(data_dir), train=False, download=True)
        return "downloaded by torchvision"
    except Exception as e:  # no internet
        download_error = f"{type(e).__name__}: {e}".splitlines()[0]
    raise ZooError(
        f"Fashion-MNIST not found in {raw_dir(data_dir)} and could not be fetched ({download_error}). "
        f"Get it one of these ways: `sudo apt-get install {DEBIAN_PACKAGE}` then `make data`; "
        f"run `make data` on a machine with internet; or copy the four *-ubyte.gz files "
        f"into {raw_dir(data_dir)}")


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), the same arithmetic as ToTensor+Normalize."""
    mean, std = FASHION_MNIST_PREPROCESS["mean"], FASHION_MNIST_PREPROCESS["std"]
    return pixels.unsqueeze(1).float().div(255.0).sub(mean).div(std)


def load_pixels(data_dir: str | os.PathLike, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (N, 28, 28) and int64 labels via torchvision's FashionMNIST."""
    if not _have(Path(data_dir)):
        raise ZooError(f"Fashion-MNIST not found in {raw_dir(data_dir)}; {GET_IT}")
    from torchvision.datasets import FashionMNIST  # after the check: its import takes 2 s
    prefix = "train" if train else "t10k"
    for kind in ("images-idx3", "labels-idx1"):
        if _real(path := raw_dir(data_dir) / f"{prefix}-{kind}-ubyte") is False:  # the real size, not its md5
            raise ZooError(f"{path} is corrupt (md5 mismatch); delete it and {GET_IT}")
    try:
        ds = FashionMNIST(str(data_dir), train=train, download=False)
        pixels, labels = ds.data, ds.targets
    except Exception as e:
        raise ZooError(f"Fashion-MNIST files in {raw_dir(data_dir)} are unreadable or corrupt "
                       f"({type(e).__name__}: {e}); delete them and {GET_IT}") from None
    if len(pixels) != len(labels) or pixels.shape[1:] != (28, 28) or len(labels) == 0:
        raise ZooError(f"Fashion-MNIST files in {raw_dir(data_dir)} disagree "
                       f"({len(pixels)} images, {len(labels)} labels); delete them and {GET_IT}")
    if labels.min() < 0 or labels.max() > 9:
        raise ZooError(f"Fashion-MNIST labels in {raw_dir(data_dir)} are out of range; "
                       f"delete them and {GET_IT}")
    return pixels, labels.long()


def is_real(data_dir: str | os.PathLike) -> bool:
    """True when `data_dir` holds the real Fashion-MNIST (not, say, a small synthetic test set)."""
    return bool(_real(raw_dir(data_dir) / "train-images-idx3-ubyte"))


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random train/validation split of range(n)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = round(n * val_fraction)
    return perm[n_val:], perm[:n_val]


def load_fashion_mnist(data_dir: str | os.PathLike, val_fraction: float = 0.2,
                       split_seed: int = 0) -> dict[str, Split]:
    """{'train', 'val', 'test'} splits as normalised tensors."""
    pixels, labels = load_pixels(data_dir, train=True)
    x = _normalise(pixels)
    train_idx, val_idx = split_indices(len(labels), val_fraction, split_seed)
    test_pixels, test_labels = load_pixels(data_dir, train=False)
    return {
        "train": Split(x[train_idx], labels[train_idx]),
        "val": Split(x[val_idx], labels[val_idx]),
        "test": Split(_normalise(test_pixels), test_labels),
    }


@cli
def main() -> None:
    parser = ArgumentParser(prog="python -m training.data.fashion_mnist", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args()
    how = prepare(args.data_dir)
    n_train, n_test = (len(load_pixels(args.data_dir, train)[1]) for train in (True, False))
    print(f"Fashion-MNIST in {raw_dir(args.data_dir)} ({how}): {n_train:,} train and {n_test:,} test images")


if __name__ == "__main__":
    main()
