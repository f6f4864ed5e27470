"""Turn the bytes a person uploads into a PIL image, safely.

Only a few well-known formats are opened (PIL would otherwise try every plugin it has, some of which
call external programs), and the pixel count is checked from the header before anything is decoded,
so a decompression bomb is refused without allocating it. Preprocessing is `zoo.spec.preprocess`,
the one definition shared with training.

What a request costs is bounded by the pixels it decodes: MAX_PIXELS per image, MAX_REQUEST_PIXELS
per request (`open_all` checks a batch's headers first), at 10-25 ns of CPU per pixel about a second
of one core at most (`make bench` measures it). A large JPEG is decoded at 1/2, 1/4 or 1/8 scale
(`Image.draft`), no side below DRAFT_MIN_SIDE (eight times the models' input); libjpeg still reads
every coefficient (a 12 MP photo: 11-56 ms instead of 65-85 ms, about a sixth of its full-scale
cost), so it counts max(its decoded pixels, its full pixels / JPEG_COST_DIVISOR) (`pixel_cost`).
"""
from __future__ import annotations

import io
import logging
import struct
import zlib

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_BYTES = 10 * 1024 * 1024        # 10 MiB per image
MAX_PIXELS = 40_000_000             # 40 megapixels per frame, decoded
MAX_REQUEST_PIXELS = 40_000_000     # decoded pixels in one request, all its images together
DRAFT_MIN_SIDE = 8 * 28             # a JPEG is decoded at reduced scale down to this side, no smaller
JPEG_COST_DIVISOR = 6               # a reduced-scale JPEG costs at least its full pixels / this
_FULL_SIZE = "fashion_zoo_full_size"  # image.info key: a JPEG's size before reduced-scale decoding
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
# A small 8-bit greyscale PNG (a Fashion-MNIST image) is decoded without PIL's plugin: see `_plain_png`.
PLAIN_PNG_PIXELS = 128 * 128
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Ancillary chunks that change neither the pixels PIL decodes nor the orientation applied to them
# (no text chunk: one may carry EXIF, "Raw profile type exif"; no tRNS, eXIf or animation chunk).
_NEUTRAL_CHUNKS = frozenset((b"gAMA", b"cHRM", b"sRGB", b"pHYs", b"tIME"))
_DECODED = "fashion_zoo_decoded"    # image.info key: already decoded, nothing for `load` to do
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
    Raises ImageError (400 for an empty, truncated or non-image upload, 413 for one too large)."""
    return load(open_image(data))


def open_image(data: bytes) -> Image.Image:
    """Bytes of an image file -> a PIL image whose header is read and checked, pixels not yet decoded
    (`load` does it); its `size` is the size it will decode to (a large JPEG at reduced scale). Raises ImageError."""
    if not data:
        raise ImageError(f"the upload is empty; {WHAT_TO_SEND}")
    check_size(len(data))
    image = _plain_png(data)
    if image is not None:
        return image
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:
        raise ImageError(f"image dimensions are too large; {WHAT_TO_SEND}", 413) from None
    except UnidentifiedImageError:
        raise ImageError(f"not an image this service reads (not {', '.join(FORMATS)}); {WHAT_TO_SEND}") from None
    except Exception as e:  # PIL raises many types for a damaged header
        raise ImageError(f"not an image this service reads ({_why(e)}); {WHAT_TO_SEND}") from None
    if image.format == "JPEG":
        image.info[_FULL_SIZE] = image.size
        _draft(image)
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
                         f"{MAX_PIXELS:,}; {WHAT_TO_SEND}", 413)
    if width == 0 or height == 0:
        raise ImageError(f"image has no pixels ({width}x{height}); {WHAT_TO_SEND}")
    return image


def _plain_png(data: bytes) -> Image.Image | None:
    """A small non-interlaced 8-bit greyscale PNG with no chunk but IHDR, IDAT, IEND and
    `_NEUTRAL_CHUNKS`, decoded; None for any other file, or anything PIL's plugin might read otherwise.

    The pixels come from PIL's own PNG decoder (`Image.frombytes` with the plugin's "zip" decoder);
    only the plugin's per-chunk Python, most of the cost of a 28x28 image, is skipped. The chunks are
    checked as the plugin checks them (layout, CRC of every chunk but IDAT); any doubt returns None and
    the plugin reads the file. It saves 8% of the server's CPU per /classify request of a 28x28 PNG
    (0.592 ms with the plugin, 0.546 ms; 3,045 against 3,259 requests/s; wrk c64, 2 workers,
    docs/benchmarks.md, "where the margin comes from")."""
    if len(data) < 57 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if (data[8:12] != b"\x00\x00\x00\x0d" or (depth, colour, compression, filtering, interlace) != (8, 0, 0, 0, 0)
            or not 0 < width * height <= PLAIN_PNG_PIXELS):
        return None
    pos, idat = 8, []
    while True:
        if pos + 12 > len(data):
            return None
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 8 + length
        if end + 4 > len(data):
            return None
        if kind == b"IDAT":
            idat.append(data[pos + 8:end])
        else:
            if kind == b"IHDR":
                ok = pos == 8
            elif kind == b"IEND":  # right after the image data, and the file's end
                ok = bool(idat) and length == 0 and end + 4 == len(data)
            else:  # before the image data
                ok = not idat and kind in _NEUTRAL_CHUNKS
            if not ok or zlib.crc32(data[pos + 4:end]) != int.from_bytes(data[end:end + 4], "big"):
                return None
            if kind == b"IEND":
                break
        pos = end + 4
    try:
        image = Image.frombytes("L", (width, height), idat[0] if len(idat) == 1 else b"".join(idat), "zip", "L")
    except Exception:  # damaged image data: the plugin says what is wrong
        return None
    image.format = "PNG"
    image.info[_DECODED] = True
    return image


def _draft(image: Image.Image) -> None:
    """Ask libjpeg for the smallest of 1/1, 1/2, 1/4, 1/8 scale that keeps both sides >= DRAFT_MIN_SIDE."""
    try:
        image.draft(image.mode, (DRAFT_MIN_SIDE, DRAFT_MIN_SIDE))
    except Exception as e:  # a damaged header; decoding at full scale says what is wrong
        logger.debug("no reduced-scale decoding: %r", e)


def pixel_cost(image: Image.Image) -> int:
    """What decoding an image from `open_image` costs, in pixels decoded at full scale."""
    width, height = image.size
    full_width, full_height = image.info.get(_FULL_SIZE, image.size)
    return max(width * height, full_width * full_height // JPEG_COST_DIVISOR)


def open_all(images: list[tuple[str | None, bytes]]) -> list[tuple[str | None, Image.Image]]:
    """Each (filename, bytes) of a request -> (filename, `open_image`'s image), headers only. Raises
    ImageError naming the image at fault, or 413 when together they decode to over MAX_REQUEST_PIXELS."""
    out, total = [], 0
    for i, (filename, data) in enumerate(images):
        try:
            image = open_image(data)
        except ImageError as e:
            raise ImageError(f"image {i + 1} ({filename}): {e}" if len(images) > 1 else str(e), e.status) from None
        total += pixel_cost(image)
        out.append((filename, image))
    if total > MAX_REQUEST_PIXELS:
        raise ImageError(f"the {len(images)} images decode to {total:,} pixels together, over the limit of "
                         f"{MAX_REQUEST_PIXELS:,} per request; send them in several requests, or smaller "
                         f"images (a large JPEG counts a sixth of its pixels, or what it is decoded to at "
                         f"reduced scale if more)", 413)
    return out


def load(image: Image.Image) -> Image.Image:
    """An image from `open_image` -> its first frame decoded, EXIF orientation applied. Raises ImageError."""
    if image.info.get(_DECODED):  # `_plain_png`: decoded, one frame, no EXIF
        return image
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
