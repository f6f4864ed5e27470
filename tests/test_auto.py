"""model=auto: the rule that tells a Fashion-MNIST-style image from a photo, and the models it names."""

import numpy as np
import pytest
from PIL import Image

from tests.images import article_photo, light_on_dark, reopened
from zoo.auto import FASHION_MNIST, PHOTO, RULE, auto_entry, best_fashion_mnist, kind_of, route
from zoo.registry import get_entry, photo_models


@pytest.mark.parametrize("image", [
    light_on_dark(),                                   # a Fashion-MNIST image
    light_on_dark(mode="RGB"),                         # the same in colour mode
    light_on_dark(size=(280, 280), mode="RGB"),        # enlarged (a screenshot of one)
    Image.new("L", (28, 28), 255),                     # 28x28 grey, even on white
    Image.new("I;16", (28, 28), 40000),                # 16-bit grey, 28x28
], ids=["fmnist", "fmnist-rgb", "fmnist-280-rgb", "28x28-white", "28x28-16bit"])
def test_fashion_mnist_style_images(image):
    assert kind_of(reopened(image)) == FASHION_MNIST


@pytest.mark.parametrize("image", [
    article_photo("Tshirts", 1),                       # 60x80 colour on white, like the Kaggle set
    article_photo("Jeans", 2).resize((225, 300)),      # the size the catalogue photos have
    article_photo("Handbags", 3).convert("L").resize((28, 28)).convert("RGB"),  # small, in colour mode
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)),         # transparent: the background counts as white
], ids=["kaggle-60x80", "catalogue-225x300", "28x28-rgb-on-white", "transparent"])
def test_photos(image):
    assert kind_of(reopened(image)) == PHOTO


def test_threshold_is_the_rules():
    grey = lambda level: Image.new("L", (40, 40), level)  # noqa: E731
    below, at = RULE["dark_border_below"] - 0.5, RULE["dark_border_below"]
    assert kind_of(grey(int(below))) == FASHION_MNIST and kind_of(grey(int(at + 0.5))) == PHOTO
    # A different threshold in the manifest is honoured.
    assert kind_of(grey(100), {**RULE, "dark_border_below": 50}) == PHOTO


def entries(**val) -> dict:
    out = {n: {"dataset": "fashion-mnist", "metrics": {"val_acc": v}} for n, v in val.items()}
    out["kaggle"] = {"dataset": "kaggle", "metrics": {"val_acc": None}}
    return out


def test_auto_entry_names_the_best_fashion_mnist_model_and_the_photo_model():
    models = {**entries(baseline=0.90, batchnorm=0.91, numfilters=0.905),
              "photo": {"dataset": "kaggle", "metrics": {"val_acc": None}}}
    auto = auto_entry(models, photo_models())
    assert auto["models"] == {FASHION_MNIST: "batchnorm", PHOTO: "photo"}
    assert auto["rule"] == RULE and best_fashion_mnist(models) == "batchnorm"
    assert route(light_on_dark(), auto) == "batchnorm" and route(article_photo("Jeans", 1), auto) == "photo"


def test_auto_entry_falls_back_when_the_photo_model_is_not_served():
    assert auto_entry(entries(baseline=0.9), photo_models())["models"][PHOTO] == "kaggle"
    only = {"baseline": {"dataset": "fashion-mnist", "metrics": {"val_acc": 0.9}}}
    assert auto_entry(only, photo_models())["models"] == {FASHION_MNIST: "baseline", PHOTO: "baseline"}


def test_the_registry_names_a_photo_model_trained_on_photos():
    assert photo_models() and all(get_entry(n).dataset == "kaggle" for n in photo_models())
    assert not get_entry("kaggle").photos  # the study's model stays as the study defined it
    assert get_entry("kaggle").recipe == {"batch_size": 8} and get_entry("kaggle").kwargs == {}


@pytest.mark.parametrize("mode", ["1", "L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "P", "I;16", "F"])
def test_frame_mean_is_the_border_mean_of_the_whole_grey_image(mode):
    """kind_of converts only the frame to grey; it must see the grey levels a full conversion gives."""
    from zoo.auto import frame_mean
    from zoo.spec import border_mean, to_grey

    rng = np.random.default_rng(0)
    for width, height in [(1, 1), (2, 5), (37, 23), (300, 225)]:
        pixels = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        image = (Image.fromarray(pixels[..., 0]) if mode in ("I;16", "F") else Image.fromarray(pixels, "RGBA")).convert(mode)
        assert frame_mean(image) == border_mean(np.asarray(to_grey(image), dtype=np.uint8))
