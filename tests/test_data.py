import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.datasets import FashionMNIST

from tests.conftest import REAL_FASHION_MNIST, make_fashion_mnist
from training.data.fashion_mnist import load_fashion_mnist, load_pixels, prepare, raw_dir
from zoo.errors import ZooError
from zoo.spec import FASHION_MNIST_PREPROCESS, normalize, preprocess


def test_splits_from_the_real_loader(fmnist_dir):
    splits = load_fashion_mnist(fmnist_dir, val_fraction=0.2, split_seed=0)
    assert len(splits["train"]) == 2400 and len(splits["val"]) == 600 and len(splits["test"]) == 600
    assert splits["train"].x.shape == (2400, 1, 28, 28) and splits["train"].x.dtype == torch.float32
    again = load_fashion_mnist(fmnist_dir, val_fraction=0.2, split_seed=0)
    assert torch.equal(splits["val"].y, again["val"].y) and torch.equal(splits["val"].x, again["val"].x)


def test_tensors_equal_torchvision_totensor_normalize(fmnist_dir):
    """Our whole-dataset normalisation is bit-identical to the naive per-sample pipeline."""
    naive = FashionMNIST(str(fmnist_dir), train=False, transform=transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]))
    ours = load_fashion_mnist(fmnist_dir)["test"]
    for i in (0, 1, 57, 599):
        assert torch.equal(naive[i][0], ours.x[i])


def test_every_grey_level_normalises_like_torchvision():
    """normalize looks each grey level up in a table: all 256 equal ToTensor+Normalize bit for bit."""
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    naive = transforms.Normalize((0.5,), (0.5,))(transforms.ToTensor()(Image.fromarray(levels, "L")))
    np.testing.assert_array_equal(normalize(levels, FASHION_MNIST_PREPROCESS), naive[0].numpy())
    np.testing.assert_array_equal(normalize(levels[None], FASHION_MNIST_PREPROCESS), naive.numpy())


def test_service_preprocessing_equals_training_tensor(fmnist_dir):
    """The torch-free preprocessing on a saved PNG gives exactly the training tensor."""
    pixels, _ = load_pixels(fmnist_dir, train=False)
    ours = load_fashion_mnist(fmnist_dir)["test"]
    for i in (0, 3, 150):
        img = Image.fromarray(pixels[i].numpy(), "L")
        np.testing.assert_array_equal(preprocess(img, FASHION_MNIST_PREPROCESS), ours.x[i].numpy())


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(ZooError, match="make data"):
        load_pixels(tmp_path, train=True)


def test_corrupt_file_is_detected(tmp_path):
    make_fashion_mnist(tmp_path, n_train=50, n_test=20)
    f = raw_dir(tmp_path) / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])  # truncated
    with pytest.raises(ZooError, match="corrupt"):
        load_pixels(tmp_path, train=True)


@pytest.mark.realdata
@pytest.mark.skipif(not REAL_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_prepare_real_data(tmp_path):
    assert "copied" in prepare(tmp_path)
    pixels, labels = load_pixels(tmp_path, train=True)
    assert pixels.shape == (60000, 28, 28) and torch.bincount(labels).tolist() == [6000] * 10
    # a flipped byte in a full-size file is caught by its checksum
    f = raw_dir(tmp_path) / "t10k-labels-idx1-ubyte"
    data = bytearray(f.read_bytes())
    data[-1] = (data[-1] + 1) % 10
    f.write_bytes(bytes(data))
    with pytest.raises(ZooError, match="md5"):
        load_pixels(tmp_path, train=False)
    assert prepare(tmp_path) == "already present"
    shutil.rmtree(tmp_path / "FashionMNIST")
