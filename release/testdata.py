"""Each shipped model's test data set in the ONNX Model Zoo's layout, so any ONNX runtime can check
the model without this project's code.

    weights/<name>/test_data_set_0/input_0.pb    TensorProto "image"  float32 [N, C, H, W] (the model's input)
    weights/<name>/test_data_set_0/output_0.pb   TensorProto "logits" float32 [N, 10]
    weights/<name>/test_data_set_0/sources.json  which original image each input row is

The ONNX Model Zoo packs `model.onnx` beside `test_data_set_N/` in one folder; here the model stays
`weights/<name>.onnx` (its path is part of the manifest and the service's store) and its test data
lies in the folder of the same name beside it. The inputs are real test-split images (the first
of each class: Fashion-MNIST's t10k file for the Fashion-MNIST models, the photo models' held-out
Kaggle photos), preprocessed by `zoo.spec.preprocess` with the model's own spec, as the service
does; the outputs are ONNX Runtime's (CPU) logits. The originals are read, and the Kaggle split
made, by training's own loaders.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

TEST_DATA_SET = "test_data_set_0"
INPUT_PB = "input_0.pb"
OUTPUT_PB = "output_0.pb"
SOURCES = "sources.json"
# Where a dataset's originals are, relative to its root (the training config's data_dir / kaggle_dir).
FASHION_MNIST_TEST = "FashionMNIST/raw/t10k-images-idx3-ubyte"


def test_data_files(name: str) -> list[str]:
    """The paths, relative to weights/, of model `name`'s test data set."""
    return [f"{name}/{TEST_DATA_SET}/{f}" for f in (INPUT_PB, OUTPUT_PB, SOURCES)]


def dataset_root(entry: dict[str, Any], override: str | os.PathLike | None = None) -> Path:
    """Where a model's dataset lives: `override`, else its training config's (relative to here)."""
    key = "kaggle_dir" if entry["dataset"] == "kaggle" else "data_dir"
    return Path(override or entry["config"].get(key) or ("data/kaggle" if key == "kaggle_dir" else "data"))


def fashion_mnist_originals(root: Path, classes: list[str]) -> list[tuple[dict[str, Any], Any]]:
    """(source record, 28x28 greyscale PIL image) for the first t10k image of each class."""
    from PIL import Image

    from training.data.fashion_mnist import load_pixels

    pixels, labels = load_pixels(root, train=False)
    pixels, labels = pixels.numpy(), labels.numpy()
    out = []
    for c in range(len(classes)):
        hits = np.flatnonzero(labels == c)
        if len(hits):
            i = int(hits[0])
            out.append(({"file": FASHION_MNIST_TEST, "index": i, "label": c, "class": classes[c],
                         "sha256": hashlib.sha256(pixels[i].tobytes()).hexdigest()},
                        Image.fromarray(pixels[i], "L")))
    return out


def kaggle_originals(root: Path, entry: dict[str, Any]) -> list[tuple[dict[str, Any], Any]]:
    """(source record, decoded photo) for the first held-out photo of each class that has one, in
    the split the model was scored on (`training.data.kaggle.load` with its config)."""
    from PIL import Image

    from training.data.kaggle import load

    cfg = entry["config"]
    splits, _, _ = load(root, cfg.get("val_fraction", 0.2), cfg.get("split_seed", 0),
                        preprocess=entry["preprocess"], quiet=True)
    test = splits["test"]
    ids, labels = test.ids.numpy(), test.y.numpy()
    out = []
    for c in range(len(entry["classes"])):
        hits = np.flatnonzero(labels == c)
        if len(hits):
            rel = f"images/{int(ids[hits[0]])}.jpg"
            data = (root / rel).read_bytes()
            with Image.open(root / rel) as img:
                img.load()
                out.append(({"file": rel, "id": int(ids[hits[0]]), "label": c, "class": entry["classes"][c],
                             "sha256": hashlib.sha256(data).hexdigest()}, img.copy()))
    return out


def build(name: str, entry: dict[str, Any], onnx_bytes: bytes,
          root: str | os.PathLike | None = None) -> dict[str, bytes]:
    """Model `name`'s test data set: {path relative to weights/: bytes}. `root`: its dataset's folder
    (default: the one it was trained from)."""
    import onnxruntime as ort
    from onnx import numpy_helper

    from zoo.spec import preprocess

    data_root = dataset_root(entry, root)
    originals = (kaggle_originals(data_root, entry) if entry["dataset"] == "kaggle"
                 else fashion_mnist_originals(data_root, entry["classes"]))
    x = np.stack([preprocess(img, entry["preprocess"]) for _, img in originals])  # (N, C, H, W)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    in_name, out_name = entry["input"]["name"], entry["output"]["name"]
    (y,) = session.run([out_name], {in_name: x})
    sources = {"model": name, "dataset": entry["dataset"], "split": "test", "preprocess": entry["preprocess"],
               "input": {"name": in_name, "shape": list(x.shape)},
               "output": {"name": out_name, "shape": list(y.shape), "argmax": y.argmax(1).tolist()},
               "images": [record for record, _ in originals]}
    return dict(zip(test_data_files(name), (
        numpy_helper.from_array(x, in_name).SerializeToString(),
        numpy_helper.from_array(y, out_name).SerializeToString(),
        (json.dumps(sources, indent=2) + "\n").encode())))


def read(root: str | os.PathLike, name: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(inputs, expected outputs, sources) of model `name`'s test data set under `root` (weights/)."""
    import onnx
    from onnx import numpy_helper

    folder = Path(root) / name / TEST_DATA_SET
    arrays = []
    for f in (INPUT_PB, OUTPUT_PB):
        tensor = onnx.TensorProto()
        tensor.ParseFromString((folder / f).read_bytes())
        arrays.append(numpy_helper.to_array(tensor))
    return arrays[0], arrays[1], json.loads((folder / SOURCES).read_text())
