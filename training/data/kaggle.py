"""The Kaggle *Fashion Product Images* set, mapped onto the ten Fashion-MNIST classes.

    python -m training.data.kaggle summary --kaggle-dir data/kaggle    # what the loader keeps and skips
    python -m training.data.kaggle download --kaggle-dir data/kaggle   # `make data-kaggle`

The layout is Kaggle's: <kaggle_dir>/styles.csv and <kaggle_dir>/images/<id>.jpg. Everything skipped
on the way is counted, printed, and stored with the model. Each photo is decoded once through
zoo.spec's preprocessing, the function the service applies to an upload. A fixed, stratified 20% is
held out as the test set, which is also the trainer's 'val' split: a Kaggle model has no validation
accuracy. docs/kaggle-photo.md has the mapping's reasons and the counts.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.cli import ArgumentParser, cli
from zoo.errors import ZooError
from zoo.registry import default_preprocess
from zoo.spec import CLASSES, to_input, to_pixels

from ..pixel_cache import Decoded, cached_decode
from . import Split

KAGGLE_HANDLE = "paramaggarwal/fashion-product-images-small"
KAGGLE_URL = f"https://www.kaggle.com/datasets/{KAGGLE_HANDLE}"
GET_IT = (f"run `make data-kaggle KAGGLE_DIR=...` (needs a Kaggle account), or download {KAGGLE_URL} "
          f"and put styles.csv and images/ in that directory")

# articleType -> Fashion-MNIST class: only types whose photos look like that class's items (what is
# left out, and why, is in docs/kaggle-photo.md). The set has no boots: Ankle boot gets no images.
ARTICLE_TYPES: dict[str, tuple[str, ...]] = {
    "T-shirt/top": ("Tshirts", "Tops", "Lounge Tshirts"),
    "Trouser":     ("Trousers", "Jeans", "Track Pants", "Capris", "Leggings", "Jeggings", "Lounge Pants"),
    "Pullover":    ("Sweaters", "Sweatshirts"),
    "Dress":       ("Dresses",),
    "Coat":        ("Jackets", "Blazers", "Rain Jacket"),
    "Sandal":      ("Sandals", "Flip Flops", "Sports Sandals", "Heels"),
    "Shirt":       ("Shirts",),
    "Sneaker":     ("Casual Shoes", "Sports Shoes"),
    "Bag":         ("Handbags", "Backpacks", "Clutches", "Laptop Bag", "Duffel Bag", "Messenger Bag",
                    "Rucksacks", "Trolley Bag"),
    "Ankle boot":  ("Boots",),
}
assert tuple(ARTICLE_TYPES) == CLASSES
LABELS: dict[str, int] = {t: CLASSES.index(c) for c, types in ARTICLE_TYPES.items() for t in types}

COLUMNS = ("id", "articleType", "productDisplayName")  # the columns the loader needs


@dataclass
class KaggleSplit(Split):
    ids: torch.Tensor   # (N,) int64: the styles.csv id (image file name) of each row

    def take(self, idx: np.ndarray) -> KaggleSplit:
        """The rows `idx` of this split."""
        t = torch.from_numpy(idx)
        return KaggleSplit(self.x[t], self.y[t], self.ids[t])


@dataclass
class Summary:
    """What the loader read, repaired and skipped: printed, and stored with the model."""
    rows: int = 0              # data rows in styles.csv
    repaired: int = 0          # rows with unquoted commas in the last column, joined back together
    malformed: int = 0         # rows that could not be repaired (too few fields, no integer id): skipped
    duplicates: int = 0        # repeated ids after the first: skipped (they would leak into the test split)
    unmapped: int = 0          # rows whose articleType feeds no class
    unmapped_types: dict[str, int] = field(default_factory=dict)
    missing: int = 0           # mapped rows with no image file
    unreadable: int = 0        # mapped rows whose image could not be decoded
    images: int = 0            # usable images
    per_class: dict[str, int] = field(default_factory=dict)
    train: int = 0
    test: int = 0

    def lines(self) -> list[str]:
        top = ", ".join(f"{t} {n:,}" for t, n in list(self.unmapped_types.items())[:6])
        classes = ", ".join(f"{c} {self.per_class.get(c, 0):,}" for c in CLASSES)
        return [
            f"styles.csv: {self.rows:,} rows; {self.repaired} repaired malformed rows (unquoted commas), "
            f"{self.malformed} malformed rows skipped, {self.duplicates} duplicate ids skipped",
            f"unmapped article types: {self.unmapped:,} rows of {len(self.unmapped_types)} types"
            f"{f' ({top}, ...)' if top else ''}",
            f"mapped rows: {self.missing:,} missing images, {self.unreadable} unreadable images, "
            f"{self.images:,} usable: {classes}",
            f"split: {self.train:,} train, {self.test:,} test (stratified)",
        ]


def read_styles(kaggle_dir: str | os.PathLike) -> tuple[list[tuple[int, int]], Summary]:
    """(id, label) of every mapped row whose image file exists, in id order, and the counts."""
    root = Path(kaggle_dir)
    styles, images = root / "styles.csv", root / "images"
    if not styles.exists():
        raise ZooError(f"Kaggle set not found: no styles.csv in {root}; {GET_IT}")
    present = set(os.listdir(images)) if images.is_dir() else set()
    summary = Summary()
    unmapped: Counter[str] = Counter()
    seen: set[int] = set()
    items: list[tuple[int, int]] = []
    with open(styles, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if not all(c in header for c in COLUMNS):
            raise ZooError(f"{styles} is not Kaggle's styles.csv (its header lacks "
                           f"{', '.join(c for c in COLUMNS if c not in header)}); {GET_IT}")
        width, col_id, col_type = len(header), header.index("id"), header.index("articleType")
        # Extra fields can be joined back only when they spilled out of a free-text last column.
        repairable = header[-1] == "productDisplayName"
        for row in reader:
            if not row:
                continue
            summary.rows += 1
            if (len(row) < width or (len(row) > width and not repairable)
                    or not row[col_id].strip().isdigit()):
                summary.malformed += 1
                continue
            if len(row) > width:  # unquoted commas in productDisplayName
                row = row[:width - 1] + [",".join(row[width - 1:])]
                summary.repaired += 1
            pid, article = int(row[col_id]), row[col_type].strip()
            if pid in seen:
                summary.duplicates += 1
                continue
            seen.add(pid)
            if article not in LABELS:
                unmapped[article] += 1
            elif f"{pid}.jpg" not in present:
                summary.missing += 1
            else:
                items.append((pid, LABELS[article]))
    summary.unmapped = sum(unmapped.values())
    summary.unmapped_types = dict(unmapped.most_common())
    return sorted(items), summary


def decode(files: list[tuple[int, int, Path]], spec: dict[str, Any], quiet: bool) -> Decoded:
    """(ids, labels, uint8 pixels: (N, H, W) grey or (N, 3, H, W) colour) of the images that decode,
    and how many did not."""
    from PIL import Image
    from ..tqdm_fixes import Bar as tqdm  # tqdm, safe to interrupt while a bar is made

    ids, labels, pixels, failed = [], [], [], 0
    unreadable = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
    for pid, label, path in tqdm(files, desc="decoding Kaggle photos", unit="img", unit_scale=True,
                                 disable=quiet, leave=False, file=sys.stderr, mininterval=1.0):
        try:
            with Image.open(path) as img:
                img.load()  # a truncated or corrupt file fails here, not half-way through training
                pixels.append(to_pixels(img, spec))
        except unreadable:
            failed += 1
            continue
        ids.append(pid)
        labels.append(label)
    return (np.array(ids, dtype=np.int64), np.array(labels, dtype=np.int64),
            np.stack(pixels) if pixels else np.zeros(0, np.uint8), failed)  # none: load() refuses


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (train, test) indices holding out round(test_fraction * n) of each class."""
    gen = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in range(len(CLASSES)):
        idx = np.flatnonzero(labels == c)
        idx = idx[torch.randperm(len(idx), generator=gen).numpy()]
        n_test = round(len(idx) * test_fraction)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load(kaggle_dir: str | os.PathLike, val_fraction: float = 0.2, split_seed: int = 0,
         preprocess: dict[str, Any] | None = None, quiet: bool = False,
         ) -> tuple[dict[str, KaggleSplit], dict[str, Any], Summary]:
    """({'train', 'val', 'test'}, the preprocessing they were made with, the counts).

    `val_fraction` is the held-out share of each class; 'val' is that held-out test split itself.
    `preprocess` defaults to the `kaggle` model's. The usable images, hence the split, do not depend
    on the preprocessing: every model is scored on the same photos.
    """
    spec = dict(preprocess or default_preprocess("kaggle"))
    items, summary = read_styles(kaggle_dir)
    files = [(pid, label, Path(kaggle_dir) / "images" / f"{pid}.jpg") for pid, label in items]
    # Decoded once per file list and spec, then read from the disk cache (training/pixel_cache.py).
    ids, labels, pixels, unreadable = cached_decode("kaggle", files, spec, lambda: decode(files, spec, quiet),
                                                    quiet=quiet)
    summary.unreadable += unreadable
    if len(ids) == 0:
        raise ZooError(f"no usable images in {kaggle_dir} ({'; '.join(summary.lines()[:3])}); {GET_IT}")
    train_idx, test_idx = stratified_split(labels, val_fraction, split_seed)
    every = KaggleSplit(torch.from_numpy(to_input(pixels, spec)), torch.from_numpy(labels), torch.from_numpy(ids))
    test = every.take(test_idx)
    summary.images, summary.train, summary.test = len(ids), len(train_idx), len(test_idx)
    summary.per_class = {CLASSES[c]: int(n) for c, n in enumerate(np.bincount(labels, minlength=len(CLASSES)))}
    if not quiet:
        for line in summary.lines():
            print(f"[kaggle] {line}", file=sys.stderr)
    return {"train": every.take(train_idx), "val": test, "test": test}, spec, summary


def download(kaggle_dir: str | os.PathLike) -> str:
    """Fetch the Kaggle set with kagglehub (the `kaggle` extra) and link it into `kaggle_dir`."""
    dest = Path(kaggle_dir)
    if (dest / "styles.csv").exists():
        return f"already present in {dest}"
    try:
        import kagglehub
    except ImportError:
        raise ZooError("kagglehub is not installed: `.venv/bin/pip install -e '.[kaggle]'`, "
                       f"or download {KAGGLE_URL} by hand into {dest}") from None
    try:
        src = Path(kagglehub.dataset_download(KAGGLE_HANDLE))
    except Exception as e:
        why = f"{type(e).__name__}: {e}".splitlines()[0]
        raise ZooError(f"Kaggle download failed ({why}); put your API token in ~/.kaggle/kaggle.json "
                       f"or KAGGLE_USERNAME/KAGGLE_KEY (https://www.kaggle.com/settings), "
                       f"or download {KAGGLE_URL} by hand into {dest}") from None
    found = sorted(src.rglob("styles.csv"), key=lambda p: len(p.parts))
    if not found or not (found[0].parent / "images").is_dir():
        raise ZooError(f"the Kaggle download in {src} has no styles.csv beside images/; {GET_IT}")
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("images", "styles.csv"):  # styles.csv last: its presence means "ready"
        (dest / name).unlink(missing_ok=True)
        (dest / name).symlink_to((found[0].parent / name).resolve())
    return f"linked {found[0].parent} into {dest}"


def add_split_arguments(parser: argparse.ArgumentParser) -> None:
    """--kaggle-dir, --split-seed and --val-fraction: which photos, and which of them are held out."""
    parser.add_argument("--kaggle-dir", default="data/kaggle")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.2, help="held-out (test) share of each class")


@cli
def main() -> None:
    parser = ArgumentParser(prog="python -m training.data.kaggle", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("summary", "download"))
    add_split_arguments(parser)
    args = parser.parse_args()
    if args.command == "download":
        print(f"Kaggle set {download(args.kaggle_dir)}; `python -m training.data.kaggle summary "
              f"--kaggle-dir {args.kaggle_dir}` shows what training will use")
    else:
        load(args.kaggle_dir, args.val_fraction, args.split_seed)


if __name__ == "__main__":
    main()
