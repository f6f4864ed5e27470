"""service.imaging: what one request may decode (pixels per request, 413 with the figure and the
limit), and large JPEGs decoded at reduced scale without changing what the model sees."""
import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from service import imaging
from tests.images import encode, garment_photo, grey_png
from zoo.spec import to_pixels

SPECS = {  # the two preprocessings the zoo's models use (Fashion-MNIST models, kaggle)
    "pad": {"size": 28, "grayscale": "L", "fit": "pad", "resample": "lanczos", "invert": "auto",
            "mean": 0.5, "std": 0.5},
    "stretch": {"size": 28, "grayscale": "L", "fit": "stretch", "resample": "lanczos", "invert": "auto",
                "mean": 0.18, "std": 0.27},
}


def test_a_large_jpeg_is_decoded_at_reduced_scale_and_the_model_input_hardly_changes():
    data = encode(garment_photo(4000, 3000), "JPEG", quality=90)
    image = imaging.open_image(data)
    assert image.size == (500, 375)  # 1/8 scale, both sides still >= DRAFT_MIN_SIDE
    reduced = imaging.load(image)
    full = Image.open(io.BytesIO(data))
    full.load()
    assert full.size == (4000, 3000)
    for spec in SPECS.values():
        diff = np.abs(to_pixels(full, spec).astype(int) - to_pixels(reduced, spec).astype(int))
        assert diff.max() <= 2, diff.max()  # grey levels out of 255


@pytest.mark.parametrize("size", [(60, 80), (28, 28), (447, 447), (300, 3000)])
def test_small_or_narrow_jpegs_are_decoded_at_full_scale(size):
    """Never below what the model needs: no side under DRAFT_MIN_SIDE (a Kaggle photo is 60x80)."""
    image = imaging.open_image(encode(garment_photo(*size), "JPEG"))
    assert image.size == size
    assert imaging.load(image).size == size


def test_a_jpeg_over_the_pixel_limit_at_full_scale_counts_at_its_decoded_scale():
    data = encode(Image.new("RGB", (8000, 6000), (200, 200, 200)), "JPEG", quality=80)  # 48 MP
    assert imaging.decode(data).size == (1000, 750)
    big_png = grey_png(200, (8000, 6000))
    with pytest.raises(imaging.ImageError, match="48,000,000 pixels, over the limit of 40,000,000") as e:
        imaging.open_image(big_png)
    assert e.value.status == 413


def test_a_request_over_the_pixel_limit_is_refused_before_decoding_with_the_figure():
    png = encode(Image.new("RGB", (4000, 4000), (200, 180, 160)), "PNG")  # 16 MP, 50 KB
    images = [(f"{i}.png", png) for i in range(3)]
    with pytest.raises(imaging.ImageError) as e:
        imaging.open_all(images)
    assert e.value.status == 413
    assert "48,000,000 pixels" in str(e.value) and "limit of 40,000,000" in str(e.value)
    opened = imaging.open_all(images[:2])
    assert [name for name, _ in opened] == ["0.png", "1.png"]
    assert all(im.size == (4000, 4000) for _, im in opened)
    # A large JPEG is decoded at 1/8 scale (500x500) but counts a sixth of its pixels (2,666,666):
    # libjpeg still reads every coefficient.
    jpeg = encode(Image.new("RGB", (4000, 4000), (200, 180, 160)), "JPEG")
    assert len(imaging.open_all([(f"{i}.jpg", jpeg) for i in range(15)])) == 15
    with pytest.raises(imaging.ImageError, match="42,666,656 pixels"):
        imaging.open_all([(f"{i}.jpg", jpeg) for i in range(16)])


def test_open_all_names_the_bad_image():
    good = encode(garment_photo(28, 28), "PNG")
    with pytest.raises(imaging.ImageError, match=r"image 2 \(b.png\): not an image") as e:
        imaging.open_all([("a.png", good), ("b.png", b"hello"), ("c.png", good)])
    assert e.value.status == 400


def test_the_batch_route_refuses_a_request_over_the_pixel_limit_and_serves_one_under_it(client):
    """Over HTTP, on the real server: 413 with the figure and the limit; the server keeps serving."""
    png = encode(Image.new("RGB", (4000, 4000), (200, 180, 160)), "PNG")  # 16 MP each
    r = client.post("/classify/batch", files=[("image", (f"{i}.png", png, "image/png")) for i in range(3)])
    assert r.status_code == 413
    assert "48,000,000 pixels" in r.json()["error"] and "40,000,000" in r.json()["error"]
    r = client.post("/classify/batch", files=[("image", (f"{i}.png", png, "image/png")) for i in range(2)])
    assert r.status_code == 200 and r.json()["count"] == 2
    jpeg = encode(garment_photo(4000, 3000), "JPEG", quality=90)
    r = client.post("/classify/batch", files=[("image", (f"{i}.jpg", jpeg, "image/jpeg")) for i in range(4)])
    assert r.status_code == 200 and r.json()["count"] == 4


# ---------------------------------------------------------------------------------------------
# small greyscale PNGs: decoded without PIL's plugin, to the plugin's pixels, or by the plugin

def _chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    import zlib

    crc = zlib.crc32(kind + data) if crc is None else crc
    return len(data).to_bytes(4, "big") + kind + data + crc.to_bytes(4, "big")


def _with_chunk(png: bytes, chunk: bytes, before: bytes = b"IDAT") -> bytes:
    at = png.index(before) - 4
    return png[:at] + chunk + png[at:]


def _grey_pngs() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    out = {}
    for w, h in [(1, 1), (28, 28), (3, 50), (128, 128), (127, 129)]:
        pixels = rng.integers(0, 256, (h, w), dtype=np.uint8)
        pixels[: h // 2] //= 8  # runs of similar rows: the encoder picks every row filter somewhere
        for name, kw in {"": {}, "-optimized": {"optimize": True}, "-stored": {"compress_level": 0},
                         "-dpi": {"dpi": (72, 72)}}.items():
            out[f"{w}x{h}{name}"] = encode(Image.fromarray(pixels, "L"), "PNG", **kw)
    small = out["28x28"]
    out["gamma-and-srgb"] = _with_chunk(_with_chunk(small, _chunk(b"gAMA", (45455).to_bytes(4, "big"))),
                                        _chunk(b"sRGB", b"\x00"))
    idat = small.index(b"IDAT") - 4  # the image data in two chunks
    length = int.from_bytes(small[idat:idat + 4], "big")
    data = small[idat + 8:idat + 8 + length]
    out["two-idat-chunks"] = small[:idat] + _chunk(b"IDAT", data[:7]) + _chunk(b"IDAT", data[7:]) + \
        small[idat + 12 + length:]
    return out


GREY_PNGS = _grey_pngs()


@pytest.mark.parametrize("name", list(GREY_PNGS))
def test_a_small_grey_png_is_decoded_to_exactly_the_plugins_pixels(name):
    data = GREY_PNGS[name]
    assert imaging._plain_png(data) is not None  # the fast path took it
    want = Image.open(io.BytesIO(data))
    want.load()
    got = imaging.decode(data)
    assert (got.mode, got.size, got.format) == (want.mode, want.size, "PNG")
    assert np.array_equal(np.asarray(got), np.asarray(want))
    for spec in SPECS.values():
        assert np.array_equal(to_pixels(got, spec), to_pixels(want, spec))


def _others() -> dict[str, bytes]:
    small = GREY_PNGS["28x28"]
    exif = Image.Exif()
    exif[0x0112] = 6
    grey = Image.fromarray(np.arange(28 * 28, dtype=np.uint16).reshape(28, 28) % 256).convert("L")
    return {
        "rgb": encode(grey.convert("RGB"), "PNG"),
        "16-bit": encode(Image.fromarray(np.arange(28 * 28, dtype=np.uint16).reshape(28, 28) * 60), "PNG"),
        "palette": encode(grey.convert("P"), "PNG"),
        "interlaced": _interlaced(small),  # Pillow writes no interlaced PNG: the flag alone
        "transparency": encode(grey, "PNG", transparency=0),
        "exif": encode(grey, "PNG", exif=exif),
        "text": _with_chunk(small, _chunk(b"tEXt", b"Raw profile type exif\x00x")),
        "chunk-after-image-data": _with_chunk(small, _chunk(b"tIME", b"\x07\xea\x01\x01\x00\x00\x00"), b"IEND"),
        "bad-header-crc": small[:29] + b"\0\0\0\0" + small[33:],
        "data-after-the-end": small + b"\0",
        "no-end-chunk": small[:small.index(b"IEND") - 4],
        "over-the-pixel-count": grey_png(0, (129, 128)),
    }


def _interlaced(png: bytes) -> bytes:
    """The same header with the interlace flag set (and its CRC)."""
    import zlib

    header = bytearray(png[12:29])
    header[-1] = 1
    return png[:12] + bytes(header) + zlib.crc32(bytes(header)).to_bytes(4, "big") + png[33:]


OTHERS = _others()


@pytest.mark.parametrize("name", list(OTHERS))
def test_any_other_png_is_left_to_the_plugin(name):
    data = OTHERS[name]
    assert imaging._plain_png(data) is None
    try:
        want = Image.open(io.BytesIO(data))
        want.load()
    except Exception:  # the plugin refuses it, and so does the service
        with pytest.raises(imaging.ImageError):
            imaging.decode(data)
        return
    want = ImageOps.exif_transpose(want)
    assert np.array_equal(np.asarray(imaging.decode(data).convert("L")), np.asarray(want.convert("L")))


def test_a_truncated_small_grey_png_gets_the_plugins_error():
    data = GREY_PNGS["128x128"]
    with pytest.raises(imaging.ImageError, match="truncated"):
        imaging.decode(data[:len(data) // 2])
    damaged = bytearray(data)
    damaged[data.index(b"IDAT") + 40] ^= 0xFF  # image data the decoder cannot read
    with pytest.raises(imaging.ImageError):
        imaging.decode(bytes(damaged))


def test_a_model_sized_grey_image_gets_the_general_path_s_pixels():
    """to_pixels' shortcut for an image already at the model's size (the inversion only) against the
    definition: border_mean over the frame, inverted above mid-grey."""
    from zoo.spec import border_mean

    rng = np.random.default_rng(1)
    for i in range(200):
        pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
        pixels[[0, -1]] = rng.integers(100, 156)  # a border near the threshold, either side
        pixels[:, [0, -1]] = rng.integers(100, 156)
        for spec in SPECS.values():
            for invert in ("auto", "always", "never"):
                s = {**spec, "invert": invert}
                flip = invert == "always" or (invert == "auto" and border_mean(pixels) > 127.5)
                want = 255 - pixels if flip else pixels
                assert np.array_equal(to_pixels(Image.fromarray(pixels, "L"), s), want)


def reference_to_pixels(image: Image.Image, spec: dict) -> np.ndarray:
    """zoo.spec.to_pixels as first written, step by step on the whole image: what the training
    pipeline and the shipped weights were made with."""
    from zoo.spec import border_mean, frame_pixels, to_grey

    size = int(spec["size"])
    gray = to_grey(image, spec["grayscale"])
    arr = np.asarray(gray, dtype=np.uint8)
    if spec["invert"] == "always" or (spec["invert"] == "auto" and border_mean(arr) > 127.5):
        gray = ImageOps.invert(gray)
        arr = 255 - arr
    if gray.size != (size, size):
        resample = getattr(Image.Resampling, spec["resample"].upper())
        w, h = gray.size
        if spec["fit"] == "pad":
            scale = size / max(w, h)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            resized = gray.resize((nw, nh), resample)
            canvas = Image.new("L", (size, size), int(np.median(frame_pixels(arr))))
            canvas.paste(resized, ((size - nw) // 2, (size - nh) // 2))
            gray = canvas
        else:
            gray = gray.resize((size, size), resample)
        arr = np.asarray(gray, dtype=np.uint8)
    return arr


def _images_of_every_kind() -> list[Image.Image]:
    out = []
    for i, (w, h) in enumerate([(1, 1), (1, 40), (40, 1), (28, 28), (27, 29), (300, 20), (395, 395), (640, 480)]):
        base = garment_photo(w, h, seed=i)
        dark = Image.fromarray(255 - np.asarray(base), "RGB")  # a light item on a dark background
        for image in (base, dark):
            rgba = image.convert("RGBA")
            rgba.putalpha(Image.fromarray((np.arange(w * h).reshape(h, w) % 256).astype(np.uint8), "L"))
            palette = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
            palette.info["transparency"] = 0
            deep = Image.fromarray((np.asarray(image.convert("L"), dtype=np.uint16) * 257))
            out += [image, image.convert("L"), rgba, image.convert("LA"), palette, deep, image.convert("CMYK"),
                    image.convert("1")]
    return out


def test_the_shared_steps_give_each_preprocessing_exactly_its_pixels():
    """to_pixels and to_pixels_each (one grey conversion, inversion and resize for every model that
    shares them) against the step-by-step definition, on every kind of image, for every setting."""
    from zoo.spec import to_pixels_each

    specs = [{**spec, "invert": invert, "resample": resample}
             for spec in SPECS.values() for invert in ("auto", "always", "never")
             for resample in ("lanczos", "bilinear")]
    specs.append({**SPECS["pad"], "size": 32})
    for image in _images_of_every_kind():
        want = [reference_to_pixels(image, spec) for spec in specs]
        for got in (to_pixels_each(image, specs), [to_pixels(image, spec) for spec in specs]):
            for spec, g, w in zip(specs, got, want):
                assert g.dtype == np.uint8 and np.array_equal(g, w), (image.mode, image.size, spec)


COLOUR = {"channels": 3, "height": 80, "width": 60, "fit": "stretch", "resample": "lanczos", "invert": "never",
          "mean": 0.83, "std": 0.28}


def reference_colour_pixels(image: Image.Image, spec: dict) -> np.ndarray:
    """A colour spec's pixels step by step on the whole image: RGB (transparency on white), inverted
    when the grey frame says so, resized (stretched, or padded with the frame's per-channel median)."""
    from zoo.spec import border_mean, to_rgb

    height, width = spec["height"], spec["width"]
    rgb = to_rgb(image)
    arr = np.asarray(rgb, dtype=np.uint8)
    if spec["invert"] == "always" or (spec["invert"] == "auto" and border_mean(np.asarray(rgb.convert("L"))) > 127.5):
        rgb, arr = ImageOps.invert(rgb), 255 - arr
    resample = getattr(Image.Resampling, spec["resample"].upper())
    w, h = rgb.size
    if spec["fit"] == "pad":
        scale = min(width / w, height / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        frame = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
        canvas = Image.new("RGB", (width, height), tuple(int(v) for v in np.median(frame, axis=0)))
        canvas.paste(rgb if (nw, nh) == (w, h) else rgb.resize((nw, nh), resample),
                     ((width - nw) // 2, (height - nh) // 2))
        rgb = canvas
    elif (w, h) != (width, height):
        rgb = rgb.resize((width, height), resample)
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def test_a_colour_spec_gives_the_step_by_step_pixels_beside_the_grey_ones():
    """A colour spec (3xHxW) on every kind of image, alone and shared with the grey specs in one
    to_pixels_each call: the step-by-step definition's pixels, and the grey specs' unchanged."""
    from zoo.spec import to_pixels_each

    colour = [{**COLOUR, "invert": invert, "fit": fit} for invert in ("never", "auto") for fit in ("stretch", "pad")]
    grey = list(SPECS.values())
    for image in _images_of_every_kind():
        want = [reference_colour_pixels(image, s) for s in colour] + [reference_to_pixels(image, s) for s in grey]
        got = to_pixels_each(image, colour + grey)
        for spec, g, w in zip(colour + grey, got, want):
            assert g.dtype == np.uint8 and g.shape == w.shape and np.array_equal(g, w), (image.mode, image.size, spec)


def test_a_photo_at_a_colour_spec_s_size_is_its_own_pixels_normalised():
    from zoo.spec import input_shape, preprocess

    image = garment_photo(60, 80)
    x = preprocess(image, COLOUR)
    assert input_shape(COLOUR) == (3, 80, 60) and x.shape == (3, 80, 60) and x.dtype == np.float32
    want = (np.asarray(image, np.float32).transpose(2, 0, 1) / np.float32(255) - np.float32(0.83)) / np.float32(0.28)
    assert np.array_equal(x, want)
    # The grey specs still make (1, 28, 28) from the same photo.
    assert preprocess(image, SPECS["stretch"]).shape == (1, 28, 28)


def test_the_frame_s_grey_levels_are_pil_s_grey_conversion():
    from zoo.spec import _grey_of

    rgb = np.random.default_rng(0).integers(0, 256, (4096, 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(rgb[None], "RGB").convert("L"))[0]
    assert np.array_equal(_grey_of(rgb), want)
