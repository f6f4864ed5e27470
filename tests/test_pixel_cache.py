"""The decoded-photo cache (training/pixel_cache.py) through the real Kaggle loader: a second load
reads the cache and gives the same arrays; a changed file, spec or entry is never used."""
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.images import article_photo
from tests.test_kaggle import make_kaggle
from training import pixel_cache
from training.data.kaggle import load
from zoo.spec import FASHION_MNIST_PREPROCESS


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(pixel_cache.ENV, str(root))
    return root


@pytest.fixture
def kaggle(tmp_path) -> Path:
    root = tmp_path / "kaggle"
    make_kaggle(root)
    return root


def arrays(splits) -> list[np.ndarray]:
    return [t.numpy() for s in ("train", "test") for t in (splits[s].x, splits[s].y, splits[s].ids)]


def same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("kaggle-*.npz"))


def test_second_load_reads_the_cache_and_gives_the_same_splits(cache, kaggle, capsys, monkeypatch):
    monkeypatch.setenv(pixel_cache.ENV, "off")
    uncached, _, s0 = load(kaggle, quiet=True)
    monkeypatch.setenv(pixel_cache.ENV, str(cache))
    first, _, s1 = load(kaggle, quiet=True)
    assert len(entries(cache)) == 1
    capsys.readouterr()
    second, _, s2 = load(kaggle)
    assert "decoded images from" in capsys.readouterr().err
    assert same(arrays(uncached), arrays(first)) and same(arrays(first), arrays(second))
    assert s0.unreadable == s1.unreadable == s2.unreadable == 2  # counted from the entry too


def test_another_spec_is_another_entry(cache, kaggle):
    a, _, _ = load(kaggle, quiet=True)
    b, _, _ = load(kaggle, preprocess=FASHION_MNIST_PREPROCESS, quiet=True)
    assert len(entries(cache)) == 2 and not same(arrays(a), arrays(b))


def test_a_changed_image_is_decoded_again(cache, kaggle):
    before, _, _ = load(kaggle, quiet=True)
    path = kaggle / "images" / "1.jpg"
    article_photo("Handbags", 99).save(path, quality=90)
    os.utime(path, ns=(1, 1))  # even with an old modification time: the size differs
    after, _, _ = load(kaggle, quiet=True)
    assert len(entries(cache)) == 2 and not same(arrays(before), arrays(after))
    os.environ[pixel_cache.ENV] = "off"  # the fixture's monkeypatch restores it
    assert same(arrays(after), arrays(load(kaggle, quiet=True)[0]))


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign"])
def test_a_corrupt_or_foreign_entry_is_detected_and_rebuilt(cache, kaggle, capsys, damage):
    want, _, _ = load(kaggle, quiet=True)
    (entry,) = entries(cache)
    data = bytearray(entry.read_bytes())
    if damage == "truncate":
        entry.write_bytes(bytes(data[:len(data) // 2]))
    elif damage == "flip":  # one pixel's byte, inside the stored (uncompressed) array
        with zipfile.ZipFile(entry) as z:
            info = z.getinfo("pixels.npy")
        data[info.header_offset + 200 + len(info.filename)] ^= 0xFF
        entry.write_bytes(bytes(data))
    else:  # a whole entry, made for another spec, under this entry's name
        load(kaggle, preprocess=FASHION_MNIST_PREPROCESS, quiet=True)
        (other,) = [p for p in entries(cache) if p != entry]
        other.replace(entry)
    capsys.readouterr()
    got, _, _ = load(kaggle, quiet=True)
    err = capsys.readouterr().err
    assert ("unreadable" in err or "corrupt" in err or "other files" in err), err
    assert same(arrays(want), arrays(got))
    load(kaggle)  # rebuilt: the next load reads it
    assert "decoded images from" in capsys.readouterr().err


def test_off_and_unwritable_mean_no_cache(tmp_path, kaggle, monkeypatch, capsys):
    monkeypatch.setenv(pixel_cache.ENV, "off")
    load(kaggle, quiet=True)
    assert not (tmp_path / "cache").exists()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(pixel_cache.ENV, str(blocker / "cache"))
    splits, _, _ = load(kaggle, quiet=True)
    assert "decoding without a cache" in capsys.readouterr().err and len(splits["train"]) > 0
