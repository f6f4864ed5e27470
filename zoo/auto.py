"""`model=auto`: which model answers an image, decided by looking at the image. Torch-free.

Fashion-MNIST-style images (a 28x28 greyscale image, or a light item on a dark background) go to
the best Fashion-MNIST model, anything else (a product photo) to the photo model. The export writes
the two names and this rule into the manifest; the service calls `route` on each upload.

Why this rule (README, "model=auto"): on the 60,000 Fashion-MNIST training images and the 24,640
usable Kaggle photos, the one-pixel border of every Fashion-MNIST image has a mean grey level of
at most 104.1 of 255, and that of all but 7 photos at least 132.9 (the 7 are photos on a dark
background). Any threshold between the two routes 100% of Fashion-MNIST and 99.97% of the photos
right; mid-grey, 127.5, is the threshold the preprocessing already uses to decide to invert.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .spec import INPUT_SIZE, border_mean, to_grey

AUTO = "auto"
FASHION_MNIST, PHOTO = "fashion-mnist", "photo"  # the two kinds of image the rule tells apart

# The rule's parameters, as the manifest stores them (the export adds the two model names).
RULE: dict[str, Any] = {
    "fashion_mnist_size": INPUT_SIZE,  # a greyscale image of exactly this size is Fashion-MNIST's
    "dark_border_below": 127.5,        # mean grey level of the border (0-255): below it, light-on-dark
    "description": (f"a {INPUT_SIZE}x{INPUT_SIZE} greyscale image, or an image whose one-pixel border "
                    "is darker than mid-grey (a light item on a dark background), goes to the best "
                    "Fashion-MNIST model; any other image (a product photo) goes to the photo model"),
}

_GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def kind_of(image, rule: dict[str, Any] = RULE) -> str:
    """FASHION_MNIST or PHOTO for a PIL image of any mode and size (EXIF already applied)."""
    size = int(rule["fashion_mnist_size"])
    if image.mode in _GREY_MODES and image.size == (size, size):
        return FASHION_MNIST
    return FASHION_MNIST if frame_mean(image) < rule["dark_border_below"] else PHOTO


# Modes whose grey conversion is per pixel, so the frame's grey levels can be had from the frame alone
# (16/32-bit modes are scaled by the whole image's peak, and palettes may carry transparency).
_PER_PIXEL_MODES = ("1", "L", "LA", "RGB", "RGBA", "CMYK", "YCbCr")


def frame_mean(image) -> float:
    """`zoo.spec.border_mean` of the image's grey version, converting only the frame where the
    conversion is per pixel: a large photo is not converted twice (here and in the preprocessing)."""
    width, height = image.size
    if image.mode not in _PER_PIXEL_MODES or width < 2 or height < 2:
        return border_mean(np.asarray(to_grey(image), dtype=np.uint8))
    return border_mean(image, convert=to_grey)


def route(image, auto: dict[str, Any]) -> str:
    """The model name that answers `image` under `auto` (the manifest's "auto" entry)."""
    return auto["models"][kind_of(image, auto["rule"])]


def best_fashion_mnist(models: dict[str, dict[str, Any]]) -> str:
    """The Fashion-MNIST model with the best validation accuracy among manifest entries (ties: the
    first), else the first model: the zoo's default single model."""
    scored = {n: e["metrics"].get("val_acc") for n, e in models.items() if e.get("dataset") == "fashion-mnist"}
    scored = {n: v for n, v in scored.items() if v is not None}
    return max(scored, key=scored.get) if scored else next(iter(models))


def auto_entry(models: dict[str, dict[str, Any]], photo_models: list[str],
               rule: dict[str, Any] = RULE) -> dict[str, Any]:
    """The manifest's "auto" entry for the served `models`: Fashion-MNIST images to `best_fashion_mnist`,
    photos to the first served of `photo_models`, else any served photo model, else that one."""
    fashion = best_fashion_mnist(models)
    photos = [n for n in photo_models if n in models]
    photos += [n for n, e in models.items() if e.get("dataset") not in (None, "fashion-mnist") and n not in photos]
    return {"rule": dict(rule), "models": {FASHION_MNIST: fashion, PHOTO: photos[0] if photos else fashion}}
