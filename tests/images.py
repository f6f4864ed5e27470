"""The images the tests make, in one place: pixel arrays, PIL images, encoded files (PNG, JPEG and
the rest) and the photo fixtures of the container and pod tests (tests/test_container.py,
tests/test_k8s_play.py import `fashion_png` and `product_photo`).

A test that needs an image imports its maker from here; a second copy in a test module is a bug
waiting for this one's fix (STYLE.md, "One helper per job"). Byte-level surgery that makes one test
module's malformed cases (a cut file, a forged header) stays beside those cases.
"""
from __future__ import annotations

import functools
import gzip
import io
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import numpy as np
import pytest
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
KAGGLE_SUBSET = REPO.parent / "shared" / "data" / "kaggle-fashion-small"   # real product photos, when present


# ---------------------------------------------------------------------------------------------
# encoding

def encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    """`image` saved as a `fmt` file (Pillow's `save` keywords: quality, exif, transparency...)."""
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def reopened(image: Image.Image, fmt: str = "PNG", **kw) -> Image.Image:
    """`image` as the service gets it: saved as a `fmt` file and opened again."""
    return Image.open(io.BytesIO(encode(image, fmt, **kw)))


def png_of(pixels: np.ndarray) -> bytes:
    """A greyscale (L) PNG of uint8 `pixels` (H, W)."""
    return encode(Image.fromarray(pixels, "L"))


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST-style images: light items on a dark background

def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Light-on-dark 28x28 images whose class is learnable: a bright bar whose place and
    orientation depend on the label, plus noise. (images uint8 (n, 28, 28), labels uint8 (n,))."""
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


def light_on_dark(size: tuple[int, int] = (28, 28), mode: str = "L") -> Image.Image:
    """One synthetic Fashion-MNIST-style image (synthetic_images, seed 3), resized and converted."""
    return Image.fromarray(synthetic_images(1, seed=3)[0][0]).resize(size).convert(mode)


def grey_png(level: int, size: tuple[int, int] = (28, 28), box: tuple[int, int, int, int] | None = None,
             ink: int = 255) -> bytes:
    """A greyscale PNG of one grey `level`; with `box` (left, top, right, bottom; right and bottom
    excluded), a flat `ink` rectangle on it: a light item on a dark background when ink > level."""
    image = Image.new("L", size, level)
    if box is not None:
        image.paste(ink, box)
    return encode(image)


def fashion_mnist_test_png(fmnist_dir: Path) -> tuple[bytes, str]:
    """(PNG of the first Fashion-MNIST test image, where it came from): Debian's real dataset when
    installed, else the repo's data/ when it holds the real one, else the suite's synthetic test set
    in `fmnist_dir` (tests/conftest.py). Read from the IDX files."""
    from training.data.fashion_mnist import DEBIAN_DIR, is_real, raw_dir

    n = 16 + 28 * 28   # the IDX header and one image
    debian = DEBIAN_DIR / "t10k-images-idx3-ubyte.gz"
    if debian.exists():
        with gzip.open(debian) as f:
            raw, source = f.read(n), f"real Fashion-MNIST ({DEBIAN_DIR})"
    else:
        data_dir, source = ((REPO / "data", "real Fashion-MNIST (data/)") if is_real(REPO / "data")
                            else (fmnist_dir, "synthetic Fashion-MNIST (tests/conftest.py)"))
        with open(raw_dir(data_dir) / "t10k-images-idx3-ubyte", "rb") as f:
            raw = f.read(n)
    return png_of(np.frombuffer(raw[16:], np.uint8).reshape(28, 28)), source


# ---------------------------------------------------------------------------------------------
# photos: dark items on white, in colour

def article_photo(article: str, seed: int) -> Image.Image:
    """A 60x80 colour 'photo' on white: a dark silhouette whose shape depends on the Kaggle article
    type (Tshirts, Tops, Jeans, Casual Shoes; anything else is a bag), its colour and offset on `seed`."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (60, 80), (255, 255, 255))
    d = ImageDraw.Draw(img)
    colour = tuple(int(c) for c in rng.integers(0, 120, 3))
    j = int(rng.integers(-3, 4))
    if article in ("Tshirts", "Tops"):
        d.rectangle([18 + j, 20, 42 + j, 60], fill=colour)
        d.rectangle([6 + j, 20, 54 + j, 32], fill=colour)
    elif article == "Jeans":
        d.rectangle([18 + j, 10, 28 + j, 72], fill=colour)
        d.rectangle([32 + j, 10, 42 + j, 72], fill=colour)
    elif article == "Casual Shoes":
        d.ellipse([6, 48 + j, 54, 66 + j], fill=colour)
    else:  # a bag, or anything else
        d.rectangle([12, 30 + j, 48, 66 + j], fill=colour)
        d.arc([20, 14 + j, 40, 40 + j], 180, 360, fill=colour, width=3)
    return img


def garment_photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A product-photo-like RGB image of any size: a smooth dark garment shape on a white
    background, with noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    inside = ((x - width / 2) / (width * 0.3)) ** 2 + ((y - height / 2) / (height * 0.4)) ** 2 < 1
    base = np.where(inside, 60 + 80 * (x / width), 245)
    rgb = np.stack([base, base * 0.9, base * 0.8], axis=-1) + rng.normal(0, 6, (height, width, 1))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def dress(size: tuple[int, int] = (60, 80), background="white", ink="black", mode: str = "RGB") -> Image.Image:
    """A simple garment-like shape, flat colours (a dark dress on white, like a product photo; swap
    `background` and `ink` for a Fashion-MNIST-style one)."""
    image = Image.new(mode, size, background)
    draw = ImageDraw.Draw(image)
    w, h = size
    draw.polygon([(w * 0.35, h * 0.1), (w * 0.65, h * 0.1), (w * 0.85, h * 0.9), (w * 0.15, h * 0.9)], fill=ink)
    return image


def product_photos(n: int = 1, start: str = "") -> list[bytes]:
    """`n` product photos as JPEG files: the shared Kaggle subset's (KAGGLE_SUBSET/images, in name
    order, from the file named `start` when given) when it has them, else drawn here (60x80 JPEGs
    of a sneaker-like shape on white, shifted a little for each)."""
    images = KAGGLE_SUBSET / "images"
    found = sorted(p for p in images.glob("*.jpg") if p.name >= start)[:n] if images.is_dir() else []
    if len(found) == n and (not start or found[0].name == start):
        return [p.read_bytes() for p in found]
    out = []
    for i in range(n):
        image = Image.new("RGB", (60, 80), "white")
        draw = ImageDraw.Draw(image)
        dx = i % 5
        draw.polygon([(6 + dx, 50), (30 + dx, 40), (54, 48), (54, 60), (6 + dx, 60)], fill=(40, 60, 160))
        draw.rectangle([6, 58, 54, 62], fill=(235, 235, 235))
        out.append(encode(image, "JPEG", quality=90))
    return out


# ---------------------------------------------------------------------------------------------
# what people upload, and what the limits are for

@functools.cache
def uploads() -> Mapping[str, bytes]:
    """{kind: file} of the images people upload: every format, size and mode the service takes
    (made once, read-only)."""
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(rgba).rectangle([16, 8, 48, 56], fill=(200, 30, 30, 255))
    palette = dress(mode="RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    palette.info["transparency"] = palette.getpixel((0, 0))
    deep = Image.fromarray((np.linspace(0, 65535, 50 * 40).reshape(50, 40)).astype(np.uint16))
    frames = [dress(size=(40, 40)), Image.new("RGB", (40, 40), "black")]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    return MappingProxyType({
        "rgba-png": encode(rgba),
        "palette-png-with-transparency": encode(palette, transparency=palette.info["transparency"]),
        "16-bit-png": encode(deep),
        "cmyk-jpeg": encode(dress().convert("CMYK"), "JPEG", quality=90),
        "webp": encode(dress(), "WEBP", quality=90),
        "animated-gif": gif.getvalue(),
        "photo-jpeg-on-white": encode(dress(size=(1600, 1200), ink=(120, 60, 20)), "JPEG", quality=85),
        "grayscale-jpeg": encode(dress(mode="L", background=255, ink=0), "JPEG"),
        "exif-rotated-jpeg": encode(dress(size=(90, 50)), "JPEG", exif=exif),
        "one-pixel-png": encode(Image.new("RGB", (1, 1), "red")),
        "wide-bmp": encode(dress(size=(300, 20)), "BMP"),
        "tiff": encode(dress(), "TIFF"),
        "fashion-mnist-style-png": encode(dress(size=(28, 28), background="black", ink="white", mode="L")),
    })


def bomb_png() -> bytes:
    """A PNG over the 40-megapixel request limit: 8000x5001 (40,008,000 pixels) in a few kB."""
    return grey_png(0, (8000, 5001))


def gradient_png(side: int) -> bytes:
    """A side x side RGB PNG of smooth gradients: a small file that decodes at full cost."""
    ramp = (np.arange(side, dtype=np.uint32) * 255 // max(1, side - 1)).astype(np.uint8)
    grey = np.add.outer(ramp // 2, ramp // 2).astype(np.uint8)
    return encode(Image.fromarray(np.stack([grey, grey[::-1], grey.T], axis=-1), "RGB"))


# ---------------------------------------------------------------------------------------------
# fixtures of the container and pod tests (imported by tests/test_container.py, tests/test_k8s_play.py)

@pytest.fixture(scope="module")
def fashion_png(fmnist_dir) -> bytes:
    """The first Fashion-MNIST test image as PNG, real when this machine has the dataset."""
    return fashion_mnist_test_png(fmnist_dir)[0]


@pytest.fixture(scope="module")
def product_photo() -> bytes:
    """A product photo as JPEG, real when the shared Kaggle subset is here."""
    return product_photos(1)[0]
