"""service.imaging: what one request may decode (pixels per request, 413 with the figure and the
limit), and large JPEGs decoded at reduced scale without changing what the model sees."""
import io

import numpy as np
import pytest
from PIL import Image

from service import imaging
from zoo.spec import to_pixels

SPECS = {  # the two preprocessings the zoo's models use (Fashion-MNIST models, kaggle)
    "pad": {"size": 28, "grayscale": "L", "fit": "pad", "resample": "lanczos", "invert": "auto",
            "mean": 0.5, "std": 0.5},
    "stretch": {"size": 28, "grayscale": "L", "fit": "stretch", "resample": "lanczos", "invert": "auto",
                "mean": 0.18, "std": 0.27},
}


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A product-photo-like RGB image: a smooth dark garment shape on a white background, with noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    inside = ((x - width / 2) / (width * 0.3)) ** 2 + ((y - height / 2) / (height * 0.4)) ** 2 < 1
    base = np.where(inside, 60 + 80 * (x / width), 245)
    rgb = np.stack([base, base * 0.9, base * 0.8], axis=-1) + rng.normal(0, 6, (height, width, 1))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def test_a_large_jpeg_is_decoded_at_reduced_scale_and_the_model_input_hardly_changes():
    data = encode(photo(4000, 3000), "JPEG", quality=90)
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
    image = imaging.open_image(encode(photo(*size), "JPEG"))
    assert image.size == size
    assert imaging.load(image).size == size


def test_a_jpeg_over_the_pixel_limit_at_full_scale_counts_at_its_decoded_scale():
    data = encode(Image.new("RGB", (8000, 6000), (200, 200, 200)), "JPEG", quality=80)  # 48 MP
    assert imaging.decode(data).size == (1000, 750)
    big_png = encode(Image.new("L", (8000, 6000), 200), "PNG")
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
    good = encode(photo(28, 28), "PNG")
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
    jpeg = encode(photo(4000, 3000), "JPEG", quality=90)
    r = client.post("/classify/batch", files=[("image", (f"{i}.jpg", jpeg, "image/jpeg")) for i in range(4)])
    assert r.status_code == 200 and r.json()["count"] == 4
