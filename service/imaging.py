"""Turn the bytes a person uploads into a PIL image, safely.

Only a few well-known formats are opened (PIL would otherwise try every plugin it has, some of which
call external programs). The pixel count is checked from the header before anything is decoded, so a
small file that claims a huge canvas (a decompression bomb) is refused without allocating it.
Preprocessing to a model's input is not done here: that is `zoo.spec.preprocess`, the one definition
shared with training.
"""
from __future__ import annotations

import io
import logging

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_BYTES = 10 * 1024 * 1024        # 10 MiB per image
MAX_PIXELS = 40_000_000             # 40 megapixels per frame
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
WHAT_TO_SEND = (f"send a PNG, JPEG, WebP, GIF, BMP or TIFF image of at most {MAX_BYTES // 2**20} MiB "
                f"and {MAX_PIXELS // 1_000_000} megapixels")

logger = logging.getLogger("bentoml.fashion_zoo")


class ImageError(ValueError):
    """An upload the service cannot classify; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_size(n_bytes: int) -> None:
    if n_bytes > MAX_BYTES:
        raise ImageError(f"image is {n_bytes:,} bytes, over the limit of {MAX_BYTES:,}; {WHAT_TO_SEND}", 413)


def decode(data: bytes) -> Image.Image:
    """Bytes of an image file -> a fully loaded PIL image (first frame, EXIF orientation applied).

    Raises ImageError (400 for an empty, truncated or non-image upload, 413 for one too large).
    """
    return load(open_image(data))


def open_image(data: bytes) -> Image.Image:
    """Bytes of an image file -> a PIL image whose header is read and checked, pixels not yet decoded.

    Its `size` is known, so a caller can decide where to decode it (`load`). Raises ImageError.
    """
    if not data:
        raise ImageError(f"the upload is empty; {WHAT_TO_SEND}")
    check_size(len(data))
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:
        raise ImageError(f"image dimensions are too large; {WHAT_TO_SEND}", 413) from None
    except UnidentifiedImageError:
        raise ImageError(f"not an image this service reads (not {', '.join(FORMATS)}); {WHAT_TO_SEND}") from None
    except Exception as e:  # PIL raises many types for a damaged header
        raise ImageError(f"not an image this service reads ({_why(e)}); {WHAT_TO_SEND}") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
                         f"{MAX_PIXELS:,}; {WHAT_TO_SEND}", 413)
    if width == 0 or height == 0:
        raise ImageError(f"image has no pixels ({width}x{height}); {WHAT_TO_SEND}")
    return image


def load(image: Image.Image) -> Image.Image:
    """An image from `open_image` -> its first frame decoded, EXIF orientation applied. Raises ImageError."""
    try:
        image.seek(0)  # an animation (GIF, WebP): its first frame
        image.load()
        # A phone photo is stored sideways with an EXIF note saying how to turn it; apply it as
        # every image viewer does, so the model sees what the person sees. In place: without an
        # orientation there is nothing to do, and no copy to make.
        ImageOps.exif_transpose(image, in_place=True)
    except Image.DecompressionBombError:
        raise ImageError(f"image dimensions are too large; {WHAT_TO_SEND}", 413) from None
    except Exception as e:
        what = "truncated" if "truncated" in str(e) else "damaged"
        raise ImageError(f"the {image.format} image is {what} or unreadable ({_why(e)}); "
                         f"{WHAT_TO_SEND}") from None
    return image


def _why(e: Exception) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}"[:200] if text else type(e).__name__
