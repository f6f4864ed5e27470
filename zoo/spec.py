"""Torch-free facts shared by training, export and the service.

Class names, normalisation and the preprocessing that turns any uploaded image into the
1x28x28 float tensor a model was trained on. The service imports this module (and never torch),
so what it feeds a model is, by construction, what training fed it.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
NUM_CLASSES = len(CLASSES)
INPUT_SIZE = 28
MEAN = 0.5
STD = 0.5

# Fashion-MNIST items are light on a dark background. A photo on a white background is inverted
# ("auto": when its border is brighter than mid-grey) so it follows the same convention.
FASHION_MNIST_PREPROCESS: dict[str, Any] = {
    "size": INPUT_SIZE,         # output is size x size, one channel
    "grayscale": "L",           # PIL's ITU-R 601-2 luma
    "fit": "pad",               # keep the aspect ratio, pad the short side with the background
    "resample": "lanczos",      # PIL filter used when the image is not already size x size
    "invert": "auto",           # "auto" | "always" | "never"
    "mean": MEAN,
    "std": STD,
}


def normalize(pixels: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """uint8 pixels (..., H, W) -> float32 normalised like training: (x/255 - mean) / std."""
    if pixels.dtype == np.uint8:
        # The same float32 arithmetic, done once per grey level and looked up: equal bit for bit,
        # and a few times faster on the service's one small image.
        return _levels(spec["mean"], spec["std"]).take(pixels)
    return _normalize(pixels, spec["mean"], spec["std"])


def _normalize(pixels: np.ndarray, mean: float, std: float) -> np.ndarray:
    x = pixels.astype(np.float32) / np.float32(255.0)
    return (x - np.float32(mean)) / np.float32(std)


@functools.lru_cache(maxsize=16)
def _levels(mean: float, std: float) -> np.ndarray:
    levels = _normalize(np.arange(256, dtype=np.uint8), mean, std)
    levels.flags.writeable = False  # shared by every call
    return levels


def frame_pixels(image, convert=None) -> np.ndarray:
    """The one-pixel frame of an image as uint8 grey levels, always in this order: top row, bottom
    row, left column, right column (the corners count twice). `image`: a 2-D uint8 array, or an
    8-bit grey PIL image, of which only four one-pixel strips are cropped (a large image is not
    read whole); `convert` turns each strip of another PIL mode into 8-bit grey first."""
    if isinstance(image, np.ndarray):
        edges = [image[0], image[-1], image[:, 0], image[:, -1]]
    else:
        w, h = image.size
        strips = [image.crop(box) for box in ((0, 0, w, 1), (0, h - 1, w, h), (0, 0, 1, h), (w - 1, 0, w, h))]
        edges = [np.asarray(convert(s) if convert else s, dtype=np.uint8).ravel() for s in strips]
    return np.concatenate(edges)


def border_mean(image, convert=None) -> float:
    """Mean grey level of the one-pixel frame of an image (`frame_pixels`' arguments)."""
    return _level(frame_pixels(image, convert))


def _level(frame: np.ndarray) -> float:
    # The exact integer sum, divided once: the same float as frame.mean(), without its overhead.
    return int(frame.sum()) / frame.size


def to_grey(image, mode: str = "L"):
    """A PIL image of any mode -> an 8-bit grey PIL image of the same size (transparency on white)."""
    if image.mode == "L":
        return image
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas become white, the background of a product photo.
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, rgba)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits rather than clip.
        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        image = Image.fromarray(np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8), "L")
    return image.convert(mode) if image.mode != "L" else image


def to_pixels(image, spec: dict[str, Any]) -> np.ndarray:
    """A PIL image of any mode and size -> (size, size) uint8 grey pixels, as the model sees them."""
    return _pixels(image, spec, {})


def to_pixels_each(image, specs: list[dict[str, Any]]) -> list[np.ndarray]:
    """[to_pixels(image, spec) for spec in specs], with the steps the specs have in common (the grey
    conversion, the inversion, a resize to the same size) done once for all of them: a large image
    served to every model is converted and resized once, not once per preprocessing."""
    shared: dict[tuple, Any] = {}
    return [_pixels(image, spec, shared) for spec in specs]


def _pixels(image, spec: dict[str, Any], shared: dict[tuple, Any]) -> np.ndarray:
    """to_pixels, keeping each intermediate image in `shared` under the steps that made it."""
    size = int(spec["size"])
    key: tuple = ("grey", spec["grayscale"])
    gray = shared.get(key)
    if gray is None:
        gray = shared[key] = to_grey(image, spec["grayscale"])
    if gray.size == (size, size) and gray.mode == "L":
        # Already the model's size (a Fashion-MNIST image): only the inversion can apply.
        arr = np.frombuffer(gray.tobytes(), dtype=np.uint8).reshape(size, size)
        return 255 - arr if _inverts(spec, border_mean(arr)) else arr
    from PIL import Image, ImageOps

    # Only the one-pixel frame is read, not the whole image.
    frame = shared.get(key + ("frame",))
    if frame is None:
        frame = shared[key + ("frame",)] = frame_pixels(gray)
    if _inverts(spec, _level(frame)):
        key += ("inverted",)
        inverted = shared.get(key)
        if inverted is None:
            inverted = shared[key] = ImageOps.invert(gray)
        gray, frame = inverted, 255 - frame
    resample = getattr(Image.Resampling, spec["resample"].upper())
    w, h = gray.size
    if spec["fit"] == "pad":
        scale = size / max(w, h)
        target = max(1, round(w * scale)), max(1, round(h * scale))
    elif spec["fit"] == "stretch":
        target = size, size
    else:
        raise ValueError(f"Unknown fit {spec['fit']!r}; expected 'pad' or 'stretch'")
    key += ("resized", target, resample)
    resized = shared.get(key)
    if resized is None:
        resized = shared[key] = gray.resize(target, resample)
    if target != (size, size):  # pad: centred on the frame's median grey level
        canvas = Image.new("L", (size, size), int(np.median(frame)))
        canvas.paste(resized, ((size - target[0]) // 2, (size - target[1]) // 2))
        resized = canvas
    return np.asarray(resized, dtype=np.uint8)


def _inverts(spec: dict[str, Any], border: float) -> bool:
    """Whether an image whose border has mean grey level `border` is inverted (spec["invert"])."""
    return spec["invert"] == "always" or (spec["invert"] == "auto" and border > 127.5)


def preprocess(image, spec: dict[str, Any]) -> np.ndarray:
    """A PIL image -> float32 array (1, size, size), exactly the model's training input."""
    return normalize(to_pixels(image, spec), spec)[None]
