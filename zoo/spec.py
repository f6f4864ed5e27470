"""Torch-free facts shared by training, export and the service: class names, normalisation and the
preprocessing that turns any image into the float tensor a model was trained on (1x28x28 grey, or
the CxHxW a spec names: `channels`, `height`, `width`). The service imports this module, so what it
feeds a model is, by construction, what training fed it.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
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


def input_shape(spec: dict[str, Any]) -> tuple[int, int, int]:
    """(channels, height, width) of the tensor a spec makes; without them, a grey square of `size`."""
    size = spec.get("size")
    return (int(spec.get("channels", 1)), int(spec.get("height", size)), int(spec.get("width", size)))


def to_input(pixels: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """A batch of `to_pixels` arrays, (N, H, W) grey or (N, 3, H, W) colour -> float32 (N, C, H, W)."""
    x = normalize(pixels, spec)
    return x if input_shape(spec)[0] == 3 else x[:, None]


def normalize(pixels: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """uint8 pixels (..., H, W) -> float32 normalised like training: (x/255 - mean) / std. The float32
    arithmetic is done once per grey level and looked up: equal bit for bit, and a few times faster
    on the service's one small image."""
    return _levels(spec["mean"], spec["std"]).take(pixels)


@functools.lru_cache(maxsize=16)
def _levels(mean: float, std: float) -> np.ndarray:
    levels = (np.arange(256, dtype=np.float32) / np.float32(255.0) - np.float32(mean)) / np.float32(std)
    levels.flags.writeable = False  # shared by every call
    return levels


def frame_pixels(image, convert=None) -> np.ndarray:
    """The one-pixel frame of an image as uint8 grey levels (top, bottom, left, right; corners twice)
    of a 2-D uint8 array, or of a PIL image of which only the four strips are cropped and turned grey
    by `convert` if given (an RGB PIL image gives its frame's (N, 3) pixels)."""
    if isinstance(image, np.ndarray):
        edges = [image[0], image[-1], image[:, 0], image[:, -1]]
    else:
        w, h = image.size
        strips = [image.crop(box) for box in ((0, 0, w, 1), (0, h - 1, w, h), (0, 0, 1, h), (w - 1, 0, w, h))]
        arrays = [np.asarray(convert(s) if convert else s, dtype=np.uint8) for s in strips]
        # a grey strip's levels, or an RGB strip's (N, 3) pixels
        edges = [a.reshape(-1, a.shape[-1]) if a.ndim == 3 else a.ravel() for a in arrays]
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

    image = _on_white(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit greyscale: scale to 8 bits rather than clip.
        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        image = Image.fromarray(np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8), "L")
    return image.convert(mode) if image.mode != "L" else image


def _on_white(image):
    """An image with transparency composited on white (RGBA), the background of a product photo."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        from PIL import Image

        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image


def to_rgb(image):
    """A PIL image of any mode -> an 8-bit RGB PIL image (transparency on white, 16-bit grey scaled)."""
    if image.mode == "RGB":
        return image
    image = _on_white(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = to_grey(image)
    return image.convert("RGB")


def to_pixels(image, spec: dict[str, Any]) -> np.ndarray:
    """A PIL image of any mode and size -> the uint8 pixels the model sees: (H, W) grey or (3, H, W)."""
    return _pixels(image, spec, {})


def to_pixels_each(image, specs: list[dict[str, Any]]) -> list[np.ndarray]:
    """[to_pixels(image, spec) for spec in specs], with the steps the specs have in common (the grey
    conversion, the inversion, a resize to the same size) done once: a large image is converted once."""
    shared: dict[tuple, Any] = {}
    return [_pixels(image, spec, shared) for spec in specs]


def _pixels(image, spec: dict[str, Any], shared: dict[tuple, Any]) -> np.ndarray:
    """to_pixels, keeping each intermediate image in `shared` under the steps that made it."""
    def cached(key: tuple, make):
        if key not in shared:
            shared[key] = make()
        return shared[key]

    channels, height, width = input_shape(spec)
    colour = channels == 3
    key: tuple = ("rgb",) if colour else ("grey", spec["grayscale"])
    base = cached(key, lambda: to_rgb(image) if colour else to_grey(image, spec["grayscale"]))
    if not colour and base.size == (width, height) and base.mode == "L":
        # Already the model's size (a Fashion-MNIST image): only the inversion can apply.
        arr = np.frombuffer(base.tobytes(), dtype=np.uint8).reshape(height, width)
        return 255 - arr if _inverts(spec, border_mean(arr)) else arr
    from PIL import Image, ImageOps

    # Only the one-pixel frame is read, not the whole image. Colour: the frame's (N, 3) RGB values,
    # whose grey level decides the inversion and whose per-channel median pads.
    frame = cached(key + ("frame",), lambda: frame_pixels(base))
    if _inverts(spec, _level(_grey_of(frame) if colour else frame)):
        key += ("inverted",)
        base, frame = cached(key, lambda: ImageOps.invert(base)), 255 - frame
    resample = getattr(Image.Resampling, spec["resample"].upper())
    w, h = base.size
    if spec["fit"] == "pad":
        scale = min(width / w, height / h)
        target = max(1, round(w * scale)), max(1, round(h * scale))
    elif spec["fit"] == "stretch":
        target = width, height
    else:
        raise ValueError(f"Unknown fit {spec['fit']!r}; expected 'pad' or 'stretch'")
    key += ("resized", target, resample)
    resized = cached(key, lambda: base if base.size == target else base.resize(target, resample))
    if target != (width, height):  # pad: centred on the frame's median level (per channel)
        fill = tuple(int(v) for v in np.median(frame, axis=0)) if colour else int(np.median(frame))
        canvas = Image.new(base.mode, (width, height), fill)
        canvas.paste(resized, ((width - target[0]) // 2, (height - target[1]) // 2))
        resized = canvas
    arr = np.asarray(resized, dtype=np.uint8)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)) if colour else arr


def _grey_of(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 RGB -> (N,) uint8 grey levels, PIL's "L" conversion (ITU-R 601-2, rounded)."""
    r, g, b = (rgb[:, i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def _inverts(spec: dict[str, Any], border: float) -> bool:
    """Whether an image whose border has mean grey level `border` is inverted (spec["invert"])."""
    return spec["invert"] == "always" or (spec["invert"] == "auto" and border > 127.5)


def preprocess(image, spec: dict[str, Any]) -> np.ndarray:
    """A PIL image -> float32 array (C, H, W), exactly the model's training input."""
    return to_input(to_pixels(image, spec)[None], spec)[0]
